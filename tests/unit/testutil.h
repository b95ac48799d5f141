/* SPDX-License-Identifier: MIT */
/* Minimal unit-test helpers: CHECK() counts outcomes, TEST_SUMMARY() prints them. */
#ifndef KEEL_TESTUTIL_H
#define KEEL_TESTUTIL_H

#include <stdarg.h>
#include <stdio.h>

static int tu_passed __attribute__((unused));
static int tu_failed __attribute__((unused));

/* Records one assertion; on failure prints file:line, the expression and an optional
 * printf-style context line (fmt may be NULL). Returns ok. */
__attribute__((format(printf, 5, 6), unused)) static int
tu_check(int ok, const char *file, int line, const char *expr, const char *fmt, ...)
{
    if (ok) {
        tu_passed++;
        return 1;
    }
    tu_failed++;
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expr);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs("    ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    return 0;
}

/* Counts one assertion; usable as a statement or as a condition (evaluates to 0/1). */
#define CHECK(cond) tu_check(!!(cond), __FILE__, __LINE__, #cond, NULL)

/* Like CHECK, and on failure also prints the printf-style context given after cond. */
#define CHECKF(cond, ...) tu_check(!!(cond), __FILE__, __LINE__, #cond, __VA_ARGS__)

/* Prints "name: N passed, M failed" and evaluates to the process exit code (0 = all passed). */
#define TEST_SUMMARY(name)                                                                         \
    (printf("%s: %d passed, %d failed\n", (name), tu_passed, tu_failed), tu_failed ? 1 : 0)

#endif
