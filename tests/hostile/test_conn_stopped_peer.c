/*
 * Connections, a stopped peer (issue 8): a child process connects as a subscriber, reads the
 * first PHASE1 frames, and is then stopped with SIGSTOP, its socket open: from the relay's side it
 * is a client that never reads again. A publisher then streams far more than --max-queue (1M here,
 * so it happens fast) to it and to healthy subscribers.
 *
 * disconnect policy (the default): asserts the healthy subscribers receive every frame in order
 * and intact; the stopped peer is disconnected as a slow consumer (log line and
 * disconnects_total{reason="slow_consumer"} + 1), and its descriptor is released while the process
 * is still stopped (the count returns to the idle value); once continued, it reads an unbroken
 * prefix of the stream, intact, then the end of the connection (a relay that sent it a torn or
 * foreign frame, or kept it connected, fails).
 *
 * drop policy: the stopped peer stays connected, frames_dropped_total rises, and once continued
 * it reads whole frames in increasing order, with a gap (what was dropped), up to the newest one.
 *
 * Both: metrics consistent, fds back to idle, and a fresh pair relays. The healthy subscribers'
 * p99 delivery latency (hx_stream) is at most max(HG_RATE_FLOOR_MS, HG_FACTOR x that of the same
 * stream on a fresh server with the same options and no stopped peer), in one of HG_ATTEMPTS
 * attempts (hx_compare_p99). The child is continued and reaped at the end, or killed by the
 * teardown when the test fails half-way.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hostage.h"
#include "hostile.h"

#define FRAME 1000
#define PHASE1 100             /* frames the peer reads before it is stopped */
#define TOTAL (PHASE1 + 16000) /* 16 MB: many times --max-queue plus socket buffers */
#define STREAM_SUBS 3
/*
 * Frames/s (20 MB/s). Paced, not flat out: with --max-queue 1M, readers served in turn by this
 * one thread would otherwise drift more than 1M apart and be judged against each other (the
 * leading reader rule, docs/PROTOCOL.md: "under full load, every client is judged against the
 * fastest one"); paced, they stay one step apart.
 */
#define RATE 20000
#define CHILD_READ_MS 20000 /* the continued child gives up after this */
#define TAG 'P'

/* What the child found, sent back through a pipe. */
struct report {
    uint64_t frames; /* whole frames read */
    uint32_t last;   /* the last one's number */
    uint64_t gaps;   /* times the numbering skipped (drop policy) */
    int end;         /* 1: EOF, 2: reset, 3: timed out, 4: read the last frame */
    char err[160];   /* first error, empty when none */
};

static pid_t child = -1;

/* ------------------------------------------------------------------ the child */

static bool full_write(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

/* Checks one whole frame; false (err set) when it is not the next one expected. */
static bool child_frame(struct report *r, const uint8_t *f, bool gaps_ok)
{
    static uint8_t want[FRAME];
    char hex[9];
    memcpy(hex, f + 1, 8);
    hex[8] = '\0';
    char *end;
    unsigned long seq = strtoul(hex, &end, 16);
    uint32_t next = r->frames ? r->last + 1 : 0;
    if (f[0] != TAG || *end || seq >= TOTAL) {
        snprintf(r->err, sizeof(r->err), "frame %llu is not one of ours: \"%.9s\"",
                 (unsigned long long)r->frames, (const char *)f);
        return false;
    }
    if (seq < next || (seq > next && !gaps_ok)) {
        snprintf(r->err, sizeof(r->err), "frame %llu is #%lu where #%u was due",
                 (unsigned long long)r->frames, seq, next);
        return false;
    }
    hx_frame_line(want, FRAME, TAG, (uint32_t)seq);
    if (memcmp(want, f, FRAME) != 0) {
        snprintf(r->err, sizeof(r->err), "frame #%lu is corrupt", seq);
        return false;
    }
    if (seq > next)
        r->gaps++;
    r->last = (uint32_t)seq;
    r->frames++;
    return true;
}

/*
 * Connects, reports its local port, reads PHASE1 frames, says so, then reads on (it is stopped
 * meanwhile) until the end of the connection, an error, or (gaps_ok) the last frame.
 */
static void child_main(int port, int ctl, bool gaps_ok)
{
    /* Keep no copy of the parent's sockets: they would hold the parent's clients open. */
    if (ctl > 3)
        syscall(SYS_close_range, 3U, (unsigned)ctl - 1, 0U);
    syscall(SYS_close_range, (unsigned)ctl + 1, ~0U, 0U);
    struct report r = {0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = CHILD_READ_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        _exit(2);
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    getsockname(fd, (struct sockaddr *)&me, &len);
    int mine = ntohs(me.sin_port);
    if (!full_write(ctl, &mine, sizeof(mine)))
        _exit(3);
    static uint8_t buf[FRAME];
    size_t have = 0;
    bool said_ready = false;
    for (;;) {
        ssize_t n = recv(fd, buf + have, FRAME - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r.end = n == 0 ? 1 : errno == ECONNRESET ? 2 : 3;
            break;
        }
        have += (size_t)n;
        if (have < FRAME)
            continue;
        have = 0;
        if (!child_frame(&r, buf, gaps_ok))
            break;
        if (!said_ready && r.frames == PHASE1) {
            said_ready = full_write(ctl, "R", 1);
            if (!said_ready)
                _exit(3);
        }
        if (gaps_ok && r.last == TOTAL - 1) {
            r.end = 4;
            break;
        }
    }
    full_write(ctl, &r, sizeof(r));
    close(fd);
    _exit(0);
}

/* ------------------------------------------------------------------ the parent */

static bool read_full(int fd, void *p, size_t n, int timeout_ms)
{
    char *c = p;
    int64_t deadline = rc_now_ms() + timeout_ms;
    while (n) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - rc_now_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return false;
        ssize_t r = read(fd, c, n);
        if (r <= 0)
            return false;
        c += r;
        n -= (size_t)r;
    }
    return true;
}

static const char *end_name(int end)
{
    static const char *const names[] = {"?", "EOF", "reset", "time-out", "the last frame"};
    return end >= 0 && end < 5 ? names[end] : "?";
}

/*
 * One run, with the stopped peer or without it (the same server options and stream); returns the
 * healthy subscribers' p99 delivery latency in us. arg points to the policy (true: drop).
 */
static int64_t stopped_run(void *arg, bool peer)
{
    bool drop = *(const bool *)arg;
    int mport;
    struct rc_server *s =
        drop ? hx_start_metrics(&mport, "--max-queue", "1M", "--slow-policy", "drop", NULL)
             : hx_start_metrics(&mport, "--max-queue", "1M", NULL);
    if (!peer)
        return hx_stream_alone(s, mport, false, STREAM_SUBS, TAG, TOTAL, FRAME, RATE);
    int idle = rc_fd_count(s);

    /* The peer, in its own process. */
    int ctl[2];
    assert_int_equal(pipe2(ctl, O_CLOEXEC), 0);
    size_t mark = rc_log_mark(s);
    fflush(NULL);
    child = fork();
    assert_true(child >= 0);
    if (child == 0)
        child_main(s->port, ctl[1], drop);
    close(ctl[1]);
    int port = 0;
    if (!read_full(ctl[0], &port, sizeof(port), RC_WAIT_MS))
        fail_msg("the peer process did not connect");
    rc_wait_client_log(s, mark, port, "connected.");

    struct hx_stream st;
    hx_stream_start(&st, s, 0, STREAM_SUBS, TAG, TOTAL, FRAME, RATE);
    int base = idle + STREAM_SUBS + 2;
    hx_expect_fds(s, base, "with everyone connected");

    /* 1: the peer reads the first frames like everyone, then stops. */
    st.until = (size_t)PHASE1 * FRAME;
    char ready = 0;
    int64_t deadline = rc_now_ms() + RC_IO_MS;
    struct pollfd pf = {.fd = ctl[0], .events = POLLIN};
    while (!ready && rc_now_ms() < deadline) {
        hx_stream_step(&st, 5);
        if (poll(&pf, 1, 0) == 1 && read(ctl[0], &ready, 1) != 1)
            fail_msg("the peer process failed before reading %d frames", PHASE1);
    }
    if (ready != 'R')
        fail_msg("the peer process did not read its first %d frames", PHASE1);
    assert_int_equal(kill(child, SIGSTOP), 0);
    int wst;
    assert_int_equal(waitpid(child, &wst, WUNTRACED), child);
    assert_true(WIFSTOPPED(wst));
    double slow0 = hx_scrape(s, mport, "ringcast_disconnects_total{reason=\"slow_consumer\"}");
    double dropped0 = hx_scrape(s, mport, "ringcast_frames_dropped_total");

    /* 2: the rest of the stream, at its pace; the healthy subscribers must get all of it. */
    mark = rc_log_mark(s);
    int64_t t0 = rc_now_ms();
    st.t0 = t0 - (int64_t)PHASE1 * 1000 / RATE; /* the pace goes on from frame PHASE1 */
    hx_stream_run_out(&st, RC_IO_MS);
    print_message("%s policy: %d MB to %d healthy subscribers in %lld ms beside a stopped peer\n",
                  drop ? "drop" : "disconnect", TOTAL * FRAME >> 20, STREAM_SUBS,
                  (long long)(rc_now_ms() - t0));
    int64_t p99 = hx_stream_p99_us(&st, "beside the stopped peer");

    char line[256];
    if (!drop) {
        /* The stopped peer passed --max-queue: cut as a slow consumer, its descriptor freed. */
        char needle[64];
        rc_needle(needle, sizeof(needle), port, "disconnected (slow consumer).");
        if (!rc_log_wait(s, mark, needle, RC_WAIT_MS)) {
            bool gone = hx_gone(s, mark, port, line, sizeof(line));
            fail_msg("the stopped peer was not disconnected as a slow consumer (%s)",
                     gone ? line : "still connected");
        }
        double slow = hx_scrape(s, mport, "ringcast_disconnects_total{reason=\"slow_consumer\"}");
        if (slow - slow0 != 1)
            fail_msg("disconnects_total{reason=\"slow_consumer\"} rose by %.0f, want 1",
                     slow - slow0);
        hx_expect_fds(s, base - 1, "with the peer cut while still stopped");
        hx_expect_metrics_consistent(s, mport, STREAM_SUBS + 1);
    } else {
        /* Still connected, behind by about a quota: its oldest frames were dropped. */
        if (hx_gone(s, mark, port, line, sizeof(line)))
            fail_msg("with --slow-policy drop the stopped peer was disconnected: %s", line);
        double dropped = hx_scrape(s, mport, "ringcast_frames_dropped_total");
        if (dropped <= dropped0)
            fail_msg("frames_dropped_total stayed at %.0f with a stopped peer far behind", dropped);
        double backlog = hx_scrape(s, mport, "ringcast_max_client_backlog_bytes");
        print_message("drop policy: %.0f frames dropped, the stopped peer %.0f bytes behind\n",
                      dropped - dropped0, backlog);
        hx_expect_metrics_consistent(s, mport, STREAM_SUBS + 2);
    }

    /* 3: the peer goes on and reports what it got. */
    assert_int_equal(kill(child, SIGCONT), 0);
    struct report r;
    if (!read_full(ctl[0], &r, sizeof(r), CHILD_READ_MS + RC_WAIT_MS))
        fail_msg("the continued peer did not report");
    assert_int_equal(waitpid(child, &wst, 0), child);
    child = -1;
    close(ctl[0]);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    print_message("the peer read %llu frames (last #%u, %llu gaps), then %s%s%s\n",
                  (unsigned long long)r.frames, r.last, (unsigned long long)r.gaps, end_name(r.end),
                  r.err[0] ? "; error: " : "", r.err);
    if (r.err[0])
        fail_msg("the stopped peer received a bad stream: %s", r.err);
    if (!drop) {
        /* An unbroken prefix, then the connection's end: it was cut, not fed everything. */
        if (r.end != 1 && r.end != 2)
            fail_msg("the cut peer's connection did not end (%s)", end_name(r.end));
        if (r.frames < PHASE1 || r.frames >= TOTAL || r.gaps)
            fail_msg("the cut peer read %llu frames (gaps %llu)", (unsigned long long)r.frames,
                     (unsigned long long)r.gaps);
    } else {
        /* Whole frames, in order, some dropped, up to the newest. */
        if (r.end != 4 || r.gaps == 0 || r.frames >= TOTAL)
            fail_msg("with drops the peer read %llu frames, %llu gaps, ending with %s",
                     (unsigned long long)r.frames, (unsigned long long)r.gaps, end_name(r.end));
        /* Each frame was either delivered to it or counted as dropped, never both or neither. */
        double dropped = hx_scrape(s, mport, "ringcast_frames_dropped_total") - dropped0;
        if (dropped + (double)r.frames != TOTAL)
            fail_msg("the peer read %llu frames and %.0f were counted as dropped: %.0f of %d",
                     (unsigned long long)r.frames, dropped, dropped + (double)r.frames, TOTAL);
    }

    hx_stream_close(&st);
    assert_true(hx_wait_metric(s, mport, "ringcast_clients", 0, RC_WAIT_MS) == 0);
    hx_expect_fds(s, idle, "with every client gone");
    hx_expect_metrics_consistent(s, mport, 0);
    hx_expect_relays(s);
    hx_expect_fds(s, idle, "after the fresh pair");
    hx_stop(s, "after the stopped peer");
    return p99;
}

static void test_stopped_peer_disconnect(void **state)
{
    bool drop = false;
    hx_compare_p99("a stopped peer (disconnect policy)", stopped_run, &drop);
}

static void test_stopped_peer_drop(void **state)
{
    bool drop = true;
    hx_compare_p99("a stopped peer (drop policy)", stopped_run, &drop);
}

/* A failed test leaves the peer stopped: continue and reap it, then the usual teardown. */
static int teardown(void **state)
{
    if (child > 0) {
        kill(child, SIGKILL);
        kill(child, SIGCONT);
        waitpid(child, NULL, 0);
        child = -1;
    }
    return rc_teardown(state);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_stopped_peer_disconnect, teardown),
        cmocka_unit_test_teardown(test_stopped_peer_drop, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
