/* SPDX-License-Identifier: MIT */
/* Error code texts and errno mapping. */
#include <errno.h>
#include "keel/err.h"

const char *keel_strerror(int err)
{
    switch (err) {
    case KEEL_OK:
        return "success";
    case KEEL_EAGAIN:
        return "incomplete, try again";
    case KEEL_ENOMEM:
        return "out of memory";
    case KEEL_EINVAL:
        return "invalid value";
    case KEEL_EBADMSG:
        return "malformed message";
    case KEEL_EURITOOLONG:
        return "request line too long";
    case KEEL_EHDRTOOLARGE:
        return "header block too large";
    case KEEL_ETOOMANYHDRS:
        return "too many header fields";
    case KEEL_ENOTIMPL:
        return "not implemented";
    case KEEL_EBODYTOOLARGE:
        return "body too large";
    case KEEL_EIO:
        return "I/O error";
    case KEEL_ECONNREFUSED:
        return "connection refused";
    case KEEL_ETIMEDOUT:
        return "timed out";
    case KEEL_ECLOSED:
        return "connection closed";
    case KEEL_ENOENT:
        return "not found";
    case KEEL_ECONFIG:
        return "invalid configuration";
    case KEEL_ENOEP:
        return "no eligible endpoint";
    case KEEL_EVERSION:
        return "unsupported HTTP version";
    case KEEL_ELIMIT:
        return "limit reached";
    case KEEL_EREFUSED:
        return "refused unprocessed by the upstream";
    }
    return "unknown error";
}

int keel_err_from_errno(int e)
{
    switch (e) {
    case 0:
        return KEEL_OK;
    case EAGAIN:
        return KEEL_EAGAIN;
    case ENOMEM:
        return KEEL_ENOMEM;
    case EINVAL:
        return KEEL_EINVAL;
    case ECONNREFUSED:
        return KEEL_ECONNREFUSED;
    case ETIMEDOUT:
        return KEEL_ETIMEDOUT;
    case ENOENT:
        return KEEL_ENOENT;
    case EPIPE:
    case ECONNRESET:
        return KEEL_ECLOSED;
    default:
        return KEEL_EIO;
    }
}
