/*
 * Hostage (d): a client that reconnects every 2 s (connect with a 4 KiB receive buffer, read up to
 * 1 KiB every 200 ms, close, connect again) beside healthy subscribers. Each new connection starts
 * at the head and is a fresh reader making some progress, so a rule with a per-connection grace
 * grants it again every time; the offender must be left behind instead.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>

#include "hostage.h"

#define RECONNECT_EVERY_US 2000000
#define RECONNECT_BYTES 1024
#define RECONNECT_READ_EVERY_US 200000
#define RECONNECT_RCVBUF 4096

struct reconnect {
    int fd;
    bool cut; /* the server closed the current connection */
    int64_t opened_us;
    int connections;
    int cuts;
    long bytes;
};

static void reconnect_start(void *state, struct rc_server *s, int64_t now_us)
{
    struct reconnect *o = state;
    /* The first connection is registered before the stream starts. */
    *o = (struct reconnect){
        .fd = rc_connect_buf(s, RECONNECT_RCVBUF), .opened_us = now_us, .connections = 1};
}

static int64_t reconnect_step(void *state, struct rc_server *s, int64_t now_us)
{
    struct reconnect *o = state;
    if (now_us - o->opened_us >= RECONNECT_EVERY_US) {
        rc_close(o->fd);
        o->fd = rc_connect_raw(s, RECONNECT_RCVBUF);
        o->cut = false;
        o->opened_us = now_us;
        o->connections++;
    }
    if (!o->cut) {
        long n = hg_offender_read(o->fd, RECONNECT_BYTES);
        if (n < 0) {
            o->cut = true;
            o->cuts++;
        } else {
            o->bytes += n;
        }
    }
    int64_t next = now_us + RECONNECT_READ_EVERY_US;
    int64_t again = o->opened_us + RECONNECT_EVERY_US;
    return next < again ? next : again;
}

static void reconnect_stop(void *state, char *buf, size_t cap)
{
    struct reconnect *o = state;
    snprintf(buf, cap, "%d connections, %d of them cut by the server, %ld bytes read",
             o->connections, o->cuts, o->bytes);
    rc_close(o->fd);
}

static const struct hg_offender_ops reconnect_ops = {
    .name = "a client reconnecting every 2 s",
    .start = reconnect_start,
    .step = reconnect_step,
    .stop = reconnect_stop,
};

static void test_reconnect_full_speed(void **state)
{
    struct reconnect o = {.fd = -1};
    hg_check_full_speed(&(struct hg_offender){.ops = &reconnect_ops, .state = &o});
}

static void test_reconnect_fixed_rate(void **state)
{
    struct reconnect o = {.fd = -1};
    hg_check_fixed_rate(&(struct hg_offender){.ops = &reconnect_ops, .state = &o});
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reconnect_full_speed, rc_teardown),
        cmocka_unit_test_teardown(test_reconnect_fixed_rate, rc_teardown),
    };
    return hg_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
