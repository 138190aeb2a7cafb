/*
 * Bug 1: a publisher refused while it was paused. With --framing len32, a reader that never reads
 * (tiny SO_RCVBUF) makes the relay pause its publishers. The offender sends 4 MiB of frames and
 * then, in the same stream, a header announcing more than --max-frame (or the start of a frame
 * that breaks --max-partial-memory); the pause catches it with the end of its stream already
 * received and held. When the pause ends, the relay meets the bad header while resuming the
 * paused publishers, closes and frees the offender there, and then takes the next one off its
 * queue of paused publishers anyway: with nobody else queued it dereferences an empty queue
 * (SIGSEGV); with another publisher queued behind, that one is unlinked instead, never resumed,
 * and never read again.
 *
 * Each case, three times on a fresh server (where the pause falls in the offender's stream varies):
 * the server survives, the offender is disconnected for the right reason, a healthy subscriber
 * gets every frame the offender completed before its bad one and, when there is one, every frame
 * of the other publisher, each in order; a client that joins then gets relayed to; and the
 * server exits 0 on SIGTERM.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "hostile.h"

#define STUCK_RCVBUF 4096
#define STREAM (4u << 20) /* the offender's good frames */
#define PUB_STREAM (2u << 20)
#define RUN_MS 60000
/* Nothing moving for this long is a stall no correct relay has, even under the sanitizers. */
#define STALL_MS 15000
/* The old relay's failure depends on where the pause falls in the stream: each case runs the
 * scene this many times, on a fresh server each time. */
#define ROUNDS 3

enum { HEALTHY, STUCK, OFFENDER, PUBLISHER, NPEERS };

struct scene {
    struct rc_server *s;
    struct hx_peer peers[NPEERS];
    struct hx_check check; /* what the healthy subscriber gets */
    size_t mark;
    int offender_port;
};

/* n len32 frames of the given wire size from tag, with room for extra bytes after them. */
static uint8_t *frames(uint8_t tag, uint32_t wire, uint32_t n, size_t extra, size_t *len)
{
    *len = (size_t)n * wire;
    uint8_t *p = malloc(*len + extra);
    assert_non_null(p);
    for (uint32_t i = 0; i < n; i++)
        hx_frame_len32(p + (size_t)i * wire, wire - 4, tag, i);
    return p;
}

static bool scene_done(void *arg)
{
    struct scene *sc = arg;
    char line[256];
    return hx_check_complete(&sc->check) &&
           hx_gone(sc->s, sc->mark, sc->offender_port, line, sizeof(line));
}

/*
 * Connects the healthy subscriber, the stuck reader, the offender (sending STREAM bytes of
 * frames of `wire` bytes, then tail) and, when with_publisher, another publisher sending
 * PUB_STREAM bytes of 1 KiB frames at the same time; drives them all until the healthy
 * subscriber has every good frame and the offender was disconnected; checks the verdict.
 */
static void run_scene(struct rc_server *s, uint32_t wire, const uint8_t *tail, size_t tail_len,
                      bool with_publisher, const char *reason, int round)
{
    struct scene sc = {.s = s};
    hx_check_init(&sc.check, true);
    size_t off_len, pub_len = 0;
    uint8_t *off = frames('O', wire, STREAM / wire, tail_len, &off_len);
    memcpy(off + off_len, tail, tail_len);
    off_len += tail_len;
    sc.check.want['O'] = STREAM / wire;
    uint8_t *pub = NULL;
    size_t npeers = OFFENDER + 1;

    sc.peers[HEALTHY] = (struct hx_peer){.fd = rc_connect(s), .read = true, .check = &sc.check};
    sc.peers[STUCK] = (struct hx_peer){.fd = rc_connect_buf(s, STUCK_RCVBUF)};
    /* The offender reads what it is sent, so that no send to it is outstanding. */
    sc.peers[OFFENDER] =
        (struct hx_peer){.fd = rc_connect(s), .out = off, .out_len = off_len, .read = true};
    sc.offender_port = rc_port_of(sc.peers[OFFENDER].fd);
    if (with_publisher) {
        pub = frames('P', 1024, PUB_STREAM / 1024, 0, &pub_len);
        sc.check.want['P'] = PUB_STREAM / 1024;
        /* In 64 KiB writes, so that it is still sending when the offender is paused. */
        sc.peers[PUBLISHER] = (struct hx_peer){
            .fd = rc_connect(s), .out = pub, .out_len = pub_len, .chunk = 64 * 1024};
        npeers = PUBLISHER + 1;
    }
    sc.mark = rc_log_mark(s);
    int64_t t0 = rc_now_ms();
    struct hx_pump_opts po = {
        .done = scene_done, .arg = &sc, .timeout_ms = RUN_MS, .stall_ms = STALL_MS};
    const char *why;
    bool ok = hx_pump(s, sc.peers, npeers, &po, &why);

    char got[512], line[256] = "";
    hx_check_describe(&sc.check, got, sizeof(got));
    bool gone = hx_gone(s, sc.mark, sc.offender_port, line, sizeof(line));
    if (!ok) {
        rc_dump(s);
        fail_msg("round %d: %s after %lld ms: the healthy subscriber has %s; the offender %s%s%s; "
                 "the other publisher sent %zu/%zu bytes",
                 round, strcmp(why, "stall") ? why : "nothing moved for 15 s",
                 (long long)(rc_now_ms() - t0), got, gone ? "logged \"" : "was not disconnected",
                 gone ? line : "", gone ? "\"" : "",
                 with_publisher ? sc.peers[PUBLISHER].out_done : 0, pub_len);
    }
    if (!strstr(line, reason))
        fail_msg("the offender was disconnected with \"%s\", want \"...%s\"", line, reason);

    /* The relay still relays, to and from a client that joins now. */
    int late = rc_connect(s);
    uint8_t frame[64];
    size_t n = hx_frame_len32(frame, 32, 'L', 0);
    rc_send(late, frame, n);
    rc_expect(sc.peers[HEALTHY].fd, frame, n);
    hx_check_free(&sc.check);
    free(off);
    free(pub);

    /* Without clients, SIGTERM ends it at once, with status 0. */
    for (size_t i = 0; i < npeers; i++)
        rc_close(sc.peers[i].fd);
    rc_close(late);
    rc_signal(s, SIGTERM);
    int st = rc_wait_exit(s, RC_WAIT_MS);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rc_dump(s);
        fail_msg("round %d: the server did not exit 0 on SIGTERM (wait status 0x%x)", round, st);
    }
}

/* ROUNDS scenes, each on a fresh server started with args (NULL-terminated, at most 8). */
static void run_rounds(const char *const *args, uint32_t wire, const uint8_t *tail, size_t tail_len,
                       bool with_publisher, const char *reason)
{
    for (int round = 1; round <= ROUNDS; round++) {
        struct rc_opts o = {.argv = args};
        run_scene(rc_start_ex(&o), wire, tail, tail_len, with_publisher, reason, round);
    }
}

/* A header announcing more than --max-frame (1 MiB by default), with some payload after it. */
static size_t too_long_tail(uint8_t tail[64])
{
    uint32_t n = (1u << 20) + 1;
    tail[0] = (uint8_t)(n >> 24);
    tail[1] = (uint8_t)(n >> 16);
    tail[2] = (uint8_t)(n >> 8);
    tail[3] = (uint8_t)n;
    memset(tail + 4, 'x', 60);
    return 64;
}

/* Nobody is queued behind the offender: the old relay pops an empty queue and crashes. */
static void test_len32_too_long_while_paused(void **state)
{
    static const char *const args[] = {"--framing", "len32", NULL};
    uint8_t tail[64];
    run_rounds(args, 16 * 1024, tail, too_long_tail(tail), false, "(frame too long).");
}

/* Another publisher is paused too: it must be resumed and all its frames relayed. */
static void test_len32_too_long_with_publisher_queued(void **state)
{
    static const char *const args[] = {"--framing", "len32", NULL};
    uint8_t tail[64];
    run_rounds(args, 16 * 1024, tail, too_long_tail(tail), true, "(frame too long).");
}

/*
 * The same through --max-partial-memory 16K: after its good frames (1 KiB, so that a frame split
 * between two receive buffers stays far under the limit) the offender starts a 1 MiB frame, as
 * --max-frame allows, and sends 32 KiB of it: past the limit. The relay finds that while
 * resuming the offender.
 */
static void test_len32_partial_memory_while_paused(void **state)
{
    static const char *const args[] = {"--framing", "len32", "--max-partial-memory", "16K", NULL};
    size_t len = 4 + 32 * 1024;
    uint8_t *tail = malloc(len);
    assert_non_null(tail);
    uint32_t n = 1u << 20;
    tail[0] = (uint8_t)(n >> 24);
    tail[1] = (uint8_t)(n >> 16);
    tail[2] = (uint8_t)(n >> 8);
    tail[3] = (uint8_t)n;
    memset(tail + 4, 'y', len - 4);
    run_rounds(args, 1024, tail, len, true, "(partial frame memory limit).");
    free(tail);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_len32_too_long_while_paused, rc_teardown),
        cmocka_unit_test_teardown(test_len32_too_long_with_publisher_queued, rc_teardown),
        cmocka_unit_test_teardown(test_len32_partial_memory_while_paused, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
