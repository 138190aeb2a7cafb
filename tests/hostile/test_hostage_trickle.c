/*
 * Hostage (b): a client that trickles, reading a few bytes every 200 ms, beside healthy
 * subscribers. It keeps acknowledging something, so a rule that waits for readers that still make
 * progress waits for it forever; it must be left behind instead.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>

#include "hostage.h"

#define TRICKLE_BYTES 16
#define TRICKLE_EVERY_US 200000

struct trickle {
    int fd;
    bool cut; /* the server closed it */
    long reads;
    long bytes;
};

static void trickle_start(void *state, struct rc_server *s, int64_t now_us)
{
    struct trickle *o = state;
    (void)now_us;
    *o = (struct trickle){.fd = rc_connect(s)};
}

static int64_t trickle_step(void *state, struct rc_server *s, int64_t now_us)
{
    struct trickle *o = state;
    (void)s;
    if (o->cut)
        return INT64_MAX;
    long n = hg_offender_read(o->fd, TRICKLE_BYTES);
    if (n < 0) {
        o->cut = true;
        return INT64_MAX;
    }
    o->reads++;
    o->bytes += n;
    return now_us + TRICKLE_EVERY_US;
}

static void trickle_stop(void *state, char *buf, size_t cap)
{
    struct trickle *o = state;
    snprintf(buf, cap, "read %ld bytes in %ld reads of at most %d%s", o->bytes, o->reads,
             TRICKLE_BYTES, o->cut ? ", then was disconnected" : "");
    rc_close(o->fd);
}

static const struct hg_offender_ops trickle_ops = {
    .name = "a client reading 16 bytes every 200 ms",
    .start = trickle_start,
    .step = trickle_step,
    .stop = trickle_stop,
};

static void test_trickle_full_speed(void **state)
{
    struct trickle o = {.fd = -1};
    hg_check_full_speed(&(struct hg_offender){.ops = &trickle_ops, .state = &o});
}

static void test_trickle_fixed_rate(void **state)
{
    struct trickle o = {.fd = -1};
    hg_check_fixed_rate(&(struct hg_offender){.ops = &trickle_ops, .state = &o});
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_trickle_full_speed, rc_teardown),
        cmocka_unit_test_teardown(test_trickle_fixed_rate, rc_teardown),
    };
    return hg_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
