/* SPDX-License-Identifier: MIT */
/* libFuzzer target: chunked decoder; split feeding, decode and validate-only must all agree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keel/err.h"
#include "keel/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
    int rc;
    int done;
    size_t consumed;
    size_t out_len;
};

/* Feeds in[0..n) in pieces ending at cuts[0], cuts[1], n; payload goes to out when decoding. */
static struct run feed(const uint8_t *in, size_t n, const size_t *cuts, int ncuts, int decode,
                       char *out)
{
    struct keel_http1_chunked ck;
    struct run r = {0, 0, 0, 0};
    keel_http1_chunked_init(&ck);
    size_t start = 0;
    for (int k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        size_t len = end - start;
        char *piece = malloc(len ? len : 1);
        if (!piece)
            abort();
        memcpy(piece, in + start, len);
        size_t c = 0, dl = 0;
        int d = 0;
        r.rc = keel_http1_chunked_feed(&ck, piece, len, decode, &c, &dl, &d);
        if (c > len || dl > c)
            abort();
        if (decode)
            memcpy(out + r.out_len, piece, dl);
        free(piece);
        r.consumed += c;
        r.out_len += dl;
        if (r.rc != 0)
            return r;
        if (d) {
            r.done = 1;
            return r;
        }
        if (c != len)
            abort(); /* everything is consumed until done */
        start = end;
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const uint8_t *in = data + 2;
    size_t n = size - 2;
    size_t cuts[2];
    cuts[0] = data[0] % (n + 1);
    cuts[1] = cuts[0] + data[1] % (n - cuts[0] + 1);
    char *whole_out = malloc(n ? n : 1), *split_out = malloc(n ? n : 1);
    if (!whole_out || !split_out)
        abort();
    struct run whole = feed(in, n, NULL, 0, 1, whole_out);
    struct run split = feed(in, n, cuts, 2, 1, split_out);
    struct run check = feed(in, n, cuts, 1, 0, NULL);
    if (whole.rc != split.rc || whole.rc != check.rc || whole.done != split.done ||
        whole.done != check.done || whole.consumed != split.consumed ||
        whole.consumed != check.consumed || whole.out_len != split.out_len ||
        whole.out_len != check.out_len || memcmp(whole_out, split_out, whole.out_len) != 0)
        abort();
    if (whole.rc != 0 && whole.rc != KEEL_EBADMSG)
        abort();
    free(whole_out);
    free(split_out);
    return 0;
}
