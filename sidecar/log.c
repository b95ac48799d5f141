/* SPDX-License-Identifier: MIT */
/* stderr logger with timestamps; one write() per line so threads do not interleave. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "keel/log.h"

int keel_log_level = KEEL_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void keel_log(int level, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 level_names[level < 0   ? 0
                             : level > 3 ? 3
                                         : level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void keel_assert_fail(const char *cond, const char *file, int line)
{
    keel_log(KEEL_LOG_ERROR, "assertion failed: %s at %s:%d", cond, file, line);
    abort();
}

int keel_log_allow(void)
{
    static _Thread_local time_t window;
    static _Thread_local unsigned count, dropped;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    if (ts.tv_sec != window) {
        window = ts.tv_sec;
        count = 0;
        if (dropped) {
            keel_log(KEEL_LOG_WARN, "%u similar messages suppressed in the last second(s)",
                     dropped);
            dropped = 0;
        }
    }
    if (count < KEEL_LOG_RL_PER_SEC) {
        count++;
        return 1;
    }
    dropped++;
    return 0;
}
