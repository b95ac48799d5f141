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

/* Invariant checks that stay on in release builds. */
#define KEEL_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            keel_assert_fail(#cond, __FILE__, __LINE__);                                           \
    } while (0)

/** Logs the failed assertion and aborts. [any] */
void keel_assert_fail(const char *cond, const char *file, int line) __attribute__((noreturn));

#endif
