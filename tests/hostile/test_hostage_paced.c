/*
 * Hostage (c): an honest reader at about 1 MB/s (it reads continuously, in a paced loop) beside
 * healthy subscribers. It never stops making progress, so pacing by the slowest reader would make
 * the whole relay a 1 MB/s relay; it must be left behind instead.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>

#include "hostage.h"

#define PACED_BYTES_PER_S 1000000
#define PACED_EVERY_US 10000
#define PACED_BURST (64 * 1024) /* most it reads at once after a pause */
/*
 * A fixed receive buffer sized for its rate (ten reads' worth, doubled by the kernel): with no
 * autotuning, the stream waits in the server rather than in several MiB of socket buffers.
 */
#define PACED_RCVBUF (16 * 1024)

struct paced {
    int fd;
    bool cut; /* the server closed it */
    int64_t last_us;
    long budget;
    long bytes;
    int64_t start_us;
};

static void paced_start(void *state, struct rc_server *s, int64_t now_us)
{
    struct paced *o = state;
    *o = (struct paced){
        .fd = rc_connect_buf(s, PACED_RCVBUF), .last_us = now_us, .start_us = now_us};
}

/* A token bucket: PACED_BYTES_PER_S on average, read every PACED_EVERY_US. */
static int64_t paced_step(void *state, struct rc_server *s, int64_t now_us)
{
    struct paced *o = state;
    (void)s;
    if (o->cut)
        return INT64_MAX;
    o->budget += (long)((now_us - o->last_us) * PACED_BYTES_PER_S / 1000000);
    o->last_us = now_us;
    if (o->budget > PACED_BURST)
        o->budget = PACED_BURST;
    for (int i = 0; i < 8 && o->budget > 0; i++) {
        long n = hg_offender_read(o->fd, (size_t)o->budget);
        if (n < 0) {
            o->cut = true;
            return INT64_MAX;
        }
        if (n == 0)
            break;
        o->budget -= n;
        o->bytes += n;
    }
    return now_us + PACED_EVERY_US;
}

static void paced_stop(void *state, char *buf, size_t cap)
{
    struct paced *o = state;
    double s = (double)(o->last_us - o->start_us) / 1e6;
    snprintf(buf, cap, "read %ld bytes in %.2f s (%.2f MB/s)%s", o->bytes, s,
             s > 0 ? (double)o->bytes / s / 1e6 : 0.0, o->cut ? ", then was disconnected" : "");
    rc_close(o->fd);
}

static const struct hg_offender_ops paced_ops = {
    .name = "a client reading at 1 MB/s",
    .start = paced_start,
    .step = paced_step,
    .stop = paced_stop,
};

static void test_paced_full_speed(void **state)
{
    struct paced o = {.fd = -1};
    hg_check_full_speed(&(struct hg_offender){.ops = &paced_ops, .state = &o});
}

static void test_paced_fixed_rate(void **state)
{
    struct paced o = {.fd = -1};
    hg_check_fixed_rate(&(struct hg_offender){.ops = &paced_ops, .state = &o});
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_paced_full_speed, rc_teardown),
        cmocka_unit_test_teardown(test_paced_fixed_rate, rc_teardown),
    };
    return hg_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
