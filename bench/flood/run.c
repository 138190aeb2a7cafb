/* The shared helpers of a run: the clock, errors, names. See run.h. */
#include "run.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

void die(const char *fmt, ...)
{
    /* stderr's own lock, never released: a second thread dying meanwhile waits here while the
     * first one's exit() ends the process, so only one message is printed. */
    flockfile(stderr);
    va_list ap;
    va_start(ap, fmt);
    fputs("flood: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void run_error(struct flood *run, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    struct errlog *e = &run->errs;
    pthread_mutex_lock(&e->mu);
    ADD(e->count, 1);
    fprintf(stderr, "flood: %s\n", buf);
    if (e->n < MAX_ERROR_MSGS)
        e->msgs[e->n++] = strdup(buf);
    pthread_mutex_unlock(&e->mu);
}

const char *phase_name(enum phase ph)
{
    static const char *const names[] = {"connect", "connect", "ready",   "warm-up",
                                        "warm-up", "warm-up", "measure", "measure",
                                        "drain",   "hold",    "grace",   "done"};
    return (unsigned)ph < sizeof(names) / sizeof(names[0]) ? names[ph] : "?";
}

const char *conn_name(const struct conn *c, char *buf, size_t len)
{
    static const char *const names[] = {"subscriber", "publisher", "slow subscriber",
                                        "churn client"};
    snprintf(buf, len, "%s %u", names[c->role], c->idx);
    return buf;
}

void run_fmt_rate(char *buf, size_t len, double v)
{
    if (v >= 1e6)
        snprintf(buf, len, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, len, "%.1fk", v / 1e3);
    else
        snprintf(buf, len, "%.0f", v);
}
