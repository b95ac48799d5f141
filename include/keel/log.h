/* SPDX-License-Identifier: MIT */
/* Logging to stderr: one line per event. [any] */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

enum keel_log_level { KEEL_LOG_ERROR = 0, KEEL_LOG_WARN, KEEL_LOG_INFO, KEEL_LOG_DEBUG };

extern int keel_log_level;

/** Writes one line "<time> <level> <message>" to stderr, if level is enabled. [any] */
void keel_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define KEEL_LOG(lvl, ...)                                                                         \
    do {                                                                                           \
        if ((lvl) <= keel_log_level)                                                               \
            keel_log((lvl), __VA_ARGS__);                                                          \
    } while (0)
#define KEEL_ERROR(...) KEEL_LOG(KEEL_LOG_ERROR, __VA_ARGS__)
#define KEEL_WARN(...) KEEL_LOG(KEEL_LOG_WARN, __VA_ARGS__)
#define KEEL_INFO(...) KEEL_LOG(KEEL_LOG_INFO, __VA_ARGS__)
#define KEEL_DEBUG(...) KEEL_LOG(KEEL_LOG_DEBUG, __VA_ARGS__)

/**
 * Rate limit for per-request messages: at most KEEL_LOG_RL_PER_SEC a second per thread.
 * @return 1 when the message may be logged; when a new second starts after suppressions it
 * first logs how many were dropped. [any]
 */
int keel_log_allow(void);
#define KEEL_LOG_RL_PER_SEC 20

/* Per-request warnings (upstream failures, rejected requests) go through the rate limit. */
#define KEEL_WARN_RL(...)                                                                          \
    do {                                                                                           \
        if (KEEL_LOG_WARN <= keel_log_level && keel_log_allow())                                   \
            keel_log(KEEL_LOG_WARN, __VA_ARGS__);                                                  \
    } while (0)
#define KEEL_INFO_RL(...)                                                                          \
    do {                                                                                           \
        if (KEEL_LOG_INFO <= keel_log_level && keel_log_allow())                                   \
            keel_log(KEEL_LOG_INFO, __VA_ARGS__);                                                  \
    } while (0)

/* Invariant checks that stay on in release builds. */
#define KEEL_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            keel_assert_fail(#cond, __FILE__, __LINE__);                                           \
    } while (0)

/** Logs the failed assertion and aborts. [any] */
void keel_assert_fail(const char *cond, const char *file, int line) __attribute__((noreturn));

#endif
