/* SPDX-License-Identifier: MIT */
/* One gRPC health check (grpc.health.v1.Health/Check over h2c) as bytes in, bytes out. [any] */
#ifndef KEEL_GRPC_HEALTH_H
#define KEEL_GRPC_HEALTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Longest HealthCheckRequest.service and :authority accepted (the loader allows less). */
#define KEEL_GRPC_HEALTH_SERVICE_MAX 1024
#define KEEL_GRPC_HEALTH_AUTHORITY_MAX 255
/* A check fails once the server sent more than this many bytes without a verdict. */
#define KEEL_GRPC_HEALTH_INPUT_MAX (64 * 1024)
/* Bytes of response messages kept (a HealthCheckResponse is 2 bytes). */
#define KEEL_GRPC_HEALTH_MSG_MAX 256

/* One check: an nghttp2 client session in memory with the request already submitted. */
struct keel_grpc_health;

enum keel_grpc_health_state {
    KEEL_GRPC_HEALTH_PENDING = 0, /* no verdict yet: send the output, feed what comes back */
    KEEL_GRPC_HEALTH_SERVING,     /* passed: :status 200, grpc-status 0, status SERVING */
    KEEL_GRPC_HEALTH_FAILED,      /* failed: keel_grpc_health_reason() says why */
};

/** Name of a state ("pending", "serving", "failed"). [any] */
const char *keel_grpc_health_state_str(enum keel_grpc_health_state s);

/**
 * Starts one check: queues the client preface, SETTINGS, and the Check call (HEADERS :method
 * POST, :scheme http, :path /grpc.health.v1.Health/Check, :authority, content-type
 * application/grpc, te trailers, grpc-timeout; DATA with one HealthCheckRequest, END_STREAM).
 * Nothing is sent here: take the bytes with keel_grpc_health_output().
 * @param out        out: the new check, owned by the caller (keel_grpc_health_free()).
 * @param authority  :authority value, copied (not NULL, 1..KEEL_GRPC_HEALTH_AUTHORITY_MAX bytes,
 *                   no control characters).
 * @param service    HealthCheckRequest.service, copied (not NULL; "" asks about the whole
 *                   server; at most KEEL_GRPC_HEALTH_SERVICE_MAX bytes).
 * @param timeout_ms sent as grpc-timeout (0: no grpc-timeout header).
 * @return 0, KEEL_EINVAL for an authority or service out of bounds, KEEL_ENOMEM. [any]
 */
int keel_grpc_health_new(struct keel_grpc_health **out, const char *authority, const char *service,
                         uint32_t timeout_ms);

/** Frees g and its session (NULL is fine). [any] */
void keel_grpc_health_free(struct keel_grpc_health *g);

/**
 * The bytes to send next (the request, SETTINGS ACK, WINDOW_UPDATE, PING ACK...).
 * @param data  out: points into g, valid until the next call on g.
 * @return how many bytes (0: nothing to send now). A session error while producing them makes
 *         the state FAILED. [any]
 */
size_t keel_grpc_health_output(struct keel_grpc_health *g, const uint8_t **data);

/** Marks n bytes of the last keel_grpc_health_output() as sent (n <= what it returned). [any] */
void keel_grpc_health_sent(struct keel_grpc_health *g, size_t n);

/**
 * Feeds bytes received from the server, in any split. Input after a verdict is ignored.
 * @return the state after them. [any]
 */
enum keel_grpc_health_state keel_grpc_health_feed(struct keel_grpc_health *g, const uint8_t *in,
                                                  size_t len);

/**
 * The server closed the connection: without a verdict yet, the check fails.
 * @return the final state (SERVING or FAILED). [any]
 */
enum keel_grpc_health_state keel_grpc_health_eof(struct keel_grpc_health *g);

/** The current state. [any] */
enum keel_grpc_health_state keel_grpc_health_state(const struct keel_grpc_health *g);

/**
 * Why the check failed ("grpc NOT_SERVING", "grpc-status 12: ...", "HTTP 404", ...), or what
 * it found when it passed ("grpc SERVING"); "" while pending. Owned by g. [any]
 */
const char *keel_grpc_health_reason(const struct keel_grpc_health *g);

/**
 * Builds the gRPC message of a HealthCheckRequest for service: the 5-byte prefix (not
 * compressed, big-endian length) and the protobuf (field 1, length-delimited; nothing for "").
 * @return bytes written, or KEEL_EINVAL when service is too long or it does not fit in cap.
 * [any]
 */
ssize_t keel_grpc_health_request_msg(uint8_t *buf, size_t cap, const char *service);

/**
 * Reads a HealthCheckResponse protobuf (without the gRPC prefix): field 1 (varint) is the
 * serving status, the last one wins, unknown fields are skipped; absent means 0 (UNKNOWN).
 * @param status  out: the ServingStatus value.
 * @return 0, or KEEL_EBADMSG when it is not a valid protobuf message. [any]
 */
int keel_grpc_health_parse_response(const uint8_t *buf, size_t len, uint64_t *status);

#endif
