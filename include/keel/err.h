/* SPDX-License-Identifier: MIT */
/* keel error codes: every function returns 0 (or a size) or one of these negatives. [any] */
#ifndef KEEL_ERR_H
#define KEEL_ERR_H

enum keel_err {
    KEEL_OK = 0,
    KEEL_EAGAIN = -1,        /* incomplete input / would block: call again with more */
    KEEL_ENOMEM = -2,        /* allocation failed */
    KEEL_EINVAL = -3,        /* invalid argument or value */
    KEEL_EBADMSG = -4,       /* malformed protocol message (HTTP 400 / 502) */
    KEEL_EURITOOLONG = -5,   /* request line over the limit (414) */
    KEEL_EHDRTOOLARGE = -6,  /* header block over the byte limit (431) */
    KEEL_ETOOMANYHDRS = -7,  /* more header fields than allowed (431) */
    KEEL_ENOTIMPL = -8,      /* unsupported transfer-coding or feature (501) */
    KEEL_EBODYTOOLARGE = -9, /* body over the limit (413) */
    KEEL_EIO = -10,          /* socket error */
    KEEL_ECONNREFUSED = -11,
    KEEL_ETIMEDOUT = -12,
    KEEL_ECLOSED = -13,  /* peer closed the connection */
    KEEL_ENOENT = -14,   /* no such thing (file, cluster, endpoint) */
    KEEL_ECONFIG = -15,  /* configuration invalid */
    KEEL_ENOEP = -16,    /* no eligible endpoint */
    KEEL_EVERSION = -17, /* unsupported HTTP version (505) */
    KEEL_ELIMIT = -18,   /* a configured limit (circuit breaker) is reached */
    KEEL_EREFUSED = -19, /* the upstream refused the request unprocessed (HTTP/2 REFUSED_STREAM,
                            or a GOAWAY below its stream): safe to send elsewhere */
};

/** Returns a static, human-readable text for a keel_err (or "unknown error"). [any] */
const char *keel_strerror(int err);

/** Maps an errno value to a keel_err. [any] */
int keel_err_from_errno(int e);

#endif
