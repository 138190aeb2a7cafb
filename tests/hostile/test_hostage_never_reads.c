/*
 * Hostage (a): a client that never reads, with a small receive buffer, beside healthy
 * subscribers. It must be left behind (and cut at --max-queue), never make the others wait.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>

#include "hostage.h"

#define NEVER_RCVBUF 4096

struct never {
    int fd;
};

static void never_start(void *state, struct rc_server *s, int64_t now_us)
{
    struct never *o = state;
    (void)now_us;
    *o = (struct never){.fd = rc_connect_buf(s, NEVER_RCVBUF)};
}

static int64_t never_step(void *state, struct rc_server *s, int64_t now_us)
{
    (void)state;
    (void)s;
    (void)now_us;
    return INT64_MAX;
}

static void never_stop(void *state, char *buf, size_t cap)
{
    struct never *o = state;
    snprintf(buf, cap, "connected with SO_RCVBUF %d, read nothing", NEVER_RCVBUF);
    rc_close(o->fd);
}

static const struct hg_offender_ops never_ops = {
    .name = "a client that never reads",
    .start = never_start,
    .step = never_step,
    .stop = never_stop,
};

static void test_never_reads_full_speed(void **state)
{
    struct never o = {.fd = -1};
    hg_check_full_speed(&(struct hg_offender){.ops = &never_ops, .state = &o});
}

static void test_never_reads_fixed_rate(void **state)
{
    struct never o = {.fd = -1};
    hg_check_fixed_rate(&(struct hg_offender){.ops = &never_ops, .state = &o});
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_never_reads_full_speed, rc_teardown),
        cmocka_unit_test_teardown(test_never_reads_fixed_rate, rc_teardown),
    };
    return hg_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
