/*
 * Bug 3: a permanent stall with --zerocopy on --slow-policy drop. A zero-copy send lends the
 * broadcast log's pages to the kernel until its notification comes, and the notification for a
 * reader that stopped reading never comes while its socket holds them. The drop policy keeps that
 * reader connected (it discards its oldest frames instead), so its pin stays: once the log has
 * wrapped round to the pinned bytes, nothing can be appended any more and every client stalls.
 *
 * The test: a publisher sends three times the log's size (the log is 32 MiB with --max-queue 1M,
 * see the README's Sizing) while a reader that never reads stays connected; a healthy subscriber
 * must get every frame, in order. Skipped (77) when the server refuses --zerocopy on (no SEND_ZC).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "hostile.h"

#define FRAME 4096
#define FRAMES (24u * 1024) /* 96 MiB: three times the log */
#define STUCK_RCVBUF 4096
#define RUN_MS 90000
/* Nothing moving for this long is a stall no correct relay has, even under the sanitizers. */
#define STALL_MS 15000

static const char *const zc_args[] = {
    "--zerocopy", "on", "--slow-policy", "drop", "--max-queue", "1M", "--max-frame", "64K", NULL};

struct scene {
    struct hx_peer peers[3]; /* publisher, healthy, stuck */
    struct hx_check check;
};

static bool done(void *arg)
{
    struct scene *sc = arg;
    return hx_check_complete(&sc->check) || sc->check.err[0] || sc->peers[1].closed;
}

static void run(const char *const *extra_env)
{
    struct rc_opts o = {.argv = zc_args, .env = extra_env};
    struct rc_server *s = rc_start_ex(&o);
    struct scene *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    size_t len = (size_t)FRAMES * FRAME;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    for (uint32_t i = 0; i < FRAMES; i++)
        hx_frame_line(data + (size_t)i * FRAME, FRAME, 'Z', i);
    hx_check_init(&sc->check, false);
    sc->check.want['Z'] = FRAMES;

    int healthy = rc_connect(s);
    int stuck = rc_connect_buf(s, STUCK_RCVBUF);
    int pub = rc_connect(s);
    size_t mark = rc_log_mark(s);
    sc->peers[0] = (struct hx_peer){.fd = pub, .out = data, .out_len = len};
    sc->peers[1] = (struct hx_peer){.fd = healthy, .read = true, .check = &sc->check};
    sc->peers[2] = (struct hx_peer){.fd = stuck};

    struct hx_pump_opts po = {.done = done, .arg = sc, .timeout_ms = RUN_MS, .stall_ms = STALL_MS};
    const char *why;
    int64_t t0 = rc_now_ms();
    bool ok = hx_pump(s, sc->peers, 3, &po, &why);
    int64_t took = rc_now_ms() - t0;
    hx_expect_alive(s, "during the test");
    char got[512], line[256];
    hx_check_describe(&sc->check, got, sizeof(got));
    bool stuck_gone = hx_gone(s, mark, rc_port_of(stuck), line, sizeof(line));
    if (sc->peers[1].closed)
        fail_msg("the healthy subscriber was disconnected; it had %s", got);
    if (!ok || !hx_check_complete(&sc->check)) {
        rc_dump(s);
        fail_msg("%s after %lld ms: the publisher sent %zu of %zu bytes (%.1f log sizes), the "
                 "healthy subscriber has %s; the stuck reader %s",
                 strcmp(why, "stall") ? why : "nothing moved for 15 s", (long long)took,
                 sc->peers[0].out_done, len, (double)sc->peers[0].out_done / (32 << 20), got,
                 stuck_gone ? "was disconnected" : "is still connected");
    }
    print_message("%zu bytes relayed in %lld ms; the stuck reader %s\n", len, (long long)took,
                  stuck_gone ? line : "is still connected");
    hx_check_free(&sc->check);
    free(data);
    free(sc);
}

/* The log registered as a fixed buffer (the default when RLIMIT_MEMLOCK allows it). */
static void test_zerocopy_drop_stuck_reader(void **state)
{
    run(NULL);
}

/* Without the fixed buffer: each zero-copy send pins its own pages. */
static void test_zerocopy_drop_stuck_reader_unregistered(void **state)
{
    static const char *const env[] = {"RINGCAST_DISABLE=fixed_buffers", NULL};
    run(env);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    /* --zerocopy on needs IORING_OP_SEND_ZC (Linux 6.0): without it the server refuses to start. */
    struct rc_opts o = {.argv = zc_args};
    int st = 0;
    struct rc_server *probe = rc_try_start(&o, &st);
    bool refused = probe == NULL;
    rc_teardown(NULL);
    if (refused) {
        fprintf(stderr, "the server refuses --zerocopy on (exit status %d): no SEND_ZC; skipped\n",
                WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_zerocopy_drop_stuck_reader, rc_teardown),
        cmocka_unit_test_teardown(test_zerocopy_drop_stuck_reader_unregistered, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
