/*
 * Odd clients (issue 8, "readers" and "writers"): one offender beside healthy clients, checked on
 * both sides. Shared by test_readers_odd.c and test_writers_odd.c. Header-only (every function
 * static) because each hostile test program is built from its own .c file plus hostage.c and
 * hostile.c only.
 *
 * A run (od_run) is a fresh server with /metrics and the case's options: OD_SUBS healthy
 * subscribers and one healthy publisher ('P') sending OD_FRAMES numbered frames of OD_FRAME bytes
 * as fast as the relay takes them; with an offender, it connects after them (before the first
 * frame) and does its act from the pump's tick. Every healthy subscriber must receive every frame
 * of 'P' and every complete frame the offender publishes, in order, byte-exact, and nothing else.
 * Then, with the healthy clients still connected (od_check_counters):
 *   - the offender's own verdict (its callback), and its disconnect line (reason suffix);
 *   - disconnects_total{reason=...} is exactly 1 for the offender's reason and 0 for every other;
 *     clients, connections_accepted_total, protocol_errors_total, frames_received_total and
 *     bytes_received_total are exact; frames/bytes delivered lie between what the healthy
 *     clients got and that plus what the offender could have got; partial_frame_bytes and
 *     pending_output_bytes come back to 0 (nothing of the offender is held).
 * Then every client closes (od_finish): the server's descriptor count returns to its idle value
 * (measured before any client connected), clients is 0, every accepted connection is counted in
 * disconnects_total, a fresh pair of clients exchanges a frame both ways, and SIGTERM ends the
 * server with status 0.
 *
 * od_check() runs (baseline without the offender, with it) pairs like hg_check_full_speed: the
 * healthy subscribers' time from the first send to the last byte must be at most
 * max(OD_FLOOR_MS, HG_FACTOR x the fastest baseline), in one of HG_ATTEMPTS attempts (the other
 * hostile tests run in parallel and load the machine). The hostage framework itself (hg_run) does
 * not fit these cases: it runs fixed default options without /metrics and stops its server inside
 * the run, so the offender's verdict, the counters, the descriptor count and the fresh pair could
 * not be checked on the server the offender met.
 *
 * Every wait is bounded in time and every loop in count, as in the harness.
 */
#ifndef RINGCAST_TEST_ODD_H
#define RINGCAST_TEST_ODD_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hostage.h"
#include "hostile.h"

/* Every function here is static; a test program need not use them all. */
#define OD_FN static __attribute__((unused))

#define OD_SUBS 8
#define OD_FRAME 1024  /* wire bytes of each of P's frames, both framings */
#define OD_FRAMES 4096 /* P's frames unless the case says otherwise */
#define OD_STREAM ((size_t)OD_FRAMES * OD_FRAME) /* 4 MiB */
#define OD_MAX_FRAMES (8 * 1024)                 /* the longest stream a case may ask for */
/* Bound on the healthy subscribers' time with the offender: max(floor, HG_FACTOR x baseline). */
#define OD_FLOOR_MS 1000
/* A run gives up after this long, or when nothing moved for OD_STALL_MS. */
#define OD_RUN_MS 60000
#define OD_STALL_MS 15000
#define OD_SUB_RCVBUF (128 * 1024) /* SO_RCVBUF of the healthy subscribers (256 KiB in effect) */
#define OD_MAX_PEERS (1 + OD_SUBS + 4)
#define OD_MAX_OWN 16

enum { OD_PUB = 0, OD_SUB0 = 1 };

/* ------------------------------------------------------------------ odd sockets */

/* Client sockets made here (with options the harness cannot set before connect). */
static int od_own[OD_MAX_OWN];
static size_t od_nown;

OD_FN bool od_owned(int fd)
{
    for (size_t i = 0; i < od_nown; i++)
        if (od_own[i] == fd)
            return true;
    return false;
}

OD_FN void od_close(int fd)
{
    for (size_t i = 0; i < od_nown; i++) {
        if (od_own[i] == fd) {
            od_own[i] = od_own[--od_nown];
            break;
        }
    }
    close(fd);
}

/* Checkers whose buffers teardown frees (a failing check leaves by longjmp). */
static struct hx_check *od_checks[32];
static size_t od_nchecks;

/* hx_check_init, and the buffer freed at teardown at the latest. */
OD_FN void od_check_init(struct hx_check *c, bool len32)
{
    hx_check_init(c, len32);
    for (size_t i = 0; i < od_nchecks; i++)
        if (od_checks[i] == c)
            return;
    if (od_nchecks == sizeof(od_checks) / sizeof(od_checks[0]))
        fail_msg("od_check_init: too many checkers");
    od_checks[od_nchecks++] = c;
}

/* cmocka teardown for these tests: closes the sockets made here, then rc_teardown(). */
OD_FN int od_teardown(void **state)
{
    for (size_t i = 0; i < od_nchecks; i++)
        hx_check_free(od_checks[i]);
    od_nchecks = 0;
    for (size_t i = 0; i < od_nown; i++)
        close(od_own[i]);
    od_nown = 0;
    return rc_teardown(state);
}

/*
 * Connects to the server on 127.0.0.1, non-blocking with TCP_NODELAY, after setting TCP_MAXSEG
 * (mss > 0) and SO_SNDBUF (sndbuf > 0) on the socket: the MSS a client announces in its SYN can
 * only be chosen before connect(). Waits for the server's "connected." line. The socket is closed
 * by od_teardown() unless od_close() closed it first.
 */
OD_FN int od_connect_opts(struct rc_server *s, int mss, int sndbuf)
{
    if (od_nown == OD_MAX_OWN)
        fail_msg("od_connect_opts: more than %d sockets", OD_MAX_OWN);
    size_t mark = rc_log_mark(s);
    int fd =
        rc_connect_opts(s, "127.0.0.1", &(struct rc_sockopts){.sndbuf = sndbuf, .maxseg = mss});
    rc_untrack(fd); /* closed by od_teardown() or od_close() */
    od_own[od_nown++] = fd;
    rc_wait_client_log(s, mark, rc_port_of(fd), "connected.");
    return fd;
}

/* The MSS the connection settled on (TCP_MAXSEG read back), -1 on error. */
OD_FN int od_mss_of(int fd)
{
    int mss = 0;
    socklen_t len = sizeof(mss);
    return getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, &len) == 0 ? mss : -1;
}

/* ------------------------------------------------------------------ the server and its counters */

/* rc_start with "--metrics 127.0.0.1:0" and args (NULL-terminated, at most 8). */
OD_FN struct rc_server *od_start(const char *const *args, int *mport)
{
    const char *a[9] = {NULL};
    for (int i = 0; args && args[i]; i++) {
        if (i == 8)
            fail_msg("od_start: more than 8 arguments");
        a[i] = args[i];
    }
    /* hx_start_metrics stops at the first NULL. */
    return hx_start_metrics(mport, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], NULL);
}

static const char *const od_reasons[] = {
    "eof",       "reset",   "slow_consumer", "frame_too_long", "partial_timeout", "partial_memory",
    "no_memory", "shutdown"};
#define OD_NREASONS (sizeof(od_reasons) / sizeof(od_reasons[0]))

/* One scrape of the figures these tests check. */
struct od_counts {
    double clients, accepted, frames_in, bytes_in, delivered, bytes_out, protocol_errors, stalls,
        pending, max_backlog, waiting, partial;
    double disc[OD_NREASONS];
    double disc_total;
};

OD_FN int od_reason_index(const char *reason)
{
    for (size_t i = 0; i < OD_NREASONS; i++)
        if (!strcmp(od_reasons[i], reason))
            return (int)i;
    fail_msg("unknown disconnect reason %s", reason);
    return -1;
}

OD_FN void od_counts(struct rc_server *s, int mport, struct od_counts *c)
{
    char *resp;
    int status = hx_http_get(s, mport, "/metrics", RC_IO_MS, &resp);
    if (status != 200) {
        rc_dump(s);
        fail_msg("GET /metrics answered %d (0: nothing within %d ms)", status, RC_IO_MS);
    }
    struct {
        const char *name;
        double *v;
    } f[] = {
        {"ringcast_clients", &c->clients},
        {"ringcast_connections_accepted_total", &c->accepted},
        {"ringcast_frames_received_total", &c->frames_in},
        {"ringcast_bytes_received_total", &c->bytes_in},
        {"ringcast_frames_delivered_total", &c->delivered},
        {"ringcast_bytes_delivered_total", &c->bytes_out},
        {"ringcast_protocol_errors_total", &c->protocol_errors},
        {"ringcast_publisher_stalls_total", &c->stalls},
        {"ringcast_pending_output_bytes", &c->pending},
        {"ringcast_max_client_backlog_bytes", &c->max_backlog},
        {"ringcast_clients_waiting_writable", &c->waiting},
        {"ringcast_partial_frame_bytes", &c->partial},
    };
    char missing[96] = "";
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]) && !missing[0]; i++)
        if (!hx_metric(resp, f[i].name, f[i].v))
            snprintf(missing, sizeof(missing), "%s", f[i].name);
    c->disc_total = 0;
    for (size_t r = 0; r < OD_NREASONS && !missing[0]; r++) {
        char name[96];
        snprintf(name, sizeof(name), "ringcast_disconnects_total{reason=\"%s\"}", od_reasons[r]);
        if (!hx_metric(resp, name, &c->disc[r]))
            snprintf(missing, sizeof(missing), "%s", name);
        c->disc_total += c->disc[r];
    }
    free(resp);
    if (missing[0])
        fail_msg("no sample %s in the scrape", missing);
}

/* "eof=1 reset=0 ..." for messages. */
OD_FN void od_describe_disc(const struct od_counts *c, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t r = 0; r < OD_NREASONS && off < cap; r++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%s=%.0f", r ? " " : "", od_reasons[r],
                                c->disc[r]);
}

/* Polling interval of the bounded waits below: a wait on a condition, never what makes it hold. */
OD_FN void od_nap(int ms)
{
    poll(NULL, 0, ms);
}

/*
 * Scrapes until partial_frame_bytes and pending_output_bytes are both 0 (what the last sends and
 * closes leave settles within a batch or two), up to RC_WAIT_MS; *c gets the last scrape.
 */
OD_FN bool od_wait_settled(struct rc_server *s, int mport, struct od_counts *c)
{
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    for (int i = 0; i < 10000; i++) {
        od_counts(s, mport, c);
        if (c->partial == 0 && c->pending == 0)
            return true;
        if (rc_now_ms() >= deadline)
            break;
        od_nap(20);
    }
    return false;
}

/* Waits until every client the server logged as connected is logged as gone. */
OD_FN void od_wait_all_gone(struct rc_server *s)
{
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    size_t in = 0, out = 0;
    for (int i = 0; i < 10000; i++) {
        in = rc_log_count(s, 0, " connected.");
        out = rc_log_count(s, 0, " disconnected");
        if (in == out || rc_now_ms() >= deadline)
            break;
        od_nap(20);
    }
    if (in != out) {
        rc_dump(s);
        fail_msg("%zu clients connected but only %zu logged as disconnected", in, out);
    }
}

/* One frame of the given framing, wire length len (>= 10), into buf. */
OD_FN size_t od_frame(uint8_t *buf, bool len32, size_t len, uint8_t tag, uint32_t seq)
{
    return len32 ? hx_frame_len32(buf, len - 4, tag, seq) : hx_frame_line(buf, len, tag, seq);
}

/*
 * The end of every run, once all its clients are closed: the descriptor count back to idle, the
 * counters balanced, a fresh pair exchanging a frame both ways, and exit 0 on SIGTERM.
 */
OD_FN void od_finish(struct rc_server *s, int mport, int idle_fds, bool len32, const char *what)
{
    od_wait_all_gone(s);
    int n = rc_wait_fd_count(s, idle_fds, RC_WAIT_MS);
    if (n != idle_fds) {
        rc_dump(s);
        rc_dump_sockets(s);
        fail_msg("%s: the server has %d descriptors open with no client, %d when idle (leak?)",
                 what, n, idle_fds);
    }
    struct od_counts c;
    bool settled = od_wait_settled(s, mport, &c);
    char disc[256];
    od_describe_disc(&c, disc, sizeof(disc));
    if (!settled || c.clients != 0 || c.disc_total != c.accepted)
        fail_msg("%s: with every client gone: clients %.0f, partial_frame_bytes %.0f, "
                 "pending_output_bytes %.0f, %.0f accepted but %.0f disconnects (%s)",
                 what, c.clients, c.partial, c.pending, c.accepted, c.disc_total, disc);

    /* It still relays: a pair that connects now exchanges a frame each way. */
    int a = rc_connect(s), b = rc_connect(s);
    uint8_t f1[64], f2[64];
    size_t n1 = od_frame(f1, len32, sizeof(f1), 'F', 0);
    size_t n2 = od_frame(f2, len32, sizeof(f2), 'F', 1);
    rc_send(a, f1, n1);
    rc_expect(b, f1, n1);
    rc_send(b, f2, n2);
    rc_expect(a, f2, n2);
    rc_close(a);
    rc_close(b);

    rc_signal(s, SIGTERM);
    int st = rc_wait_exit(s, RC_WAIT_MS);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rc_dump(s);
        fail_msg("%s: the server did not exit 0 on SIGTERM (wait status 0x%x)", what, st);
    }
}

/* ------------------------------------------------------------------ the scene */

struct od_scene;

/* The case's server options and framing. */
struct od_config {
    const char *const *args; /* after "--port 0 --metrics 127.0.0.1:0"; NULL-terminated, <= 8 */
    bool len32;
    uint32_t frames; /* P's frames (at most OD_MAX_FRAMES); 0: OD_FRAMES */
};

/* P's frames and bytes in a run of this configuration. */
OD_FN uint32_t od_frames(const struct od_config *cfg)
{
    return cfg->frames ? cfg->frames : OD_FRAMES;
}

OD_FN size_t od_stream_len(const struct od_config *cfg)
{
    return (size_t)od_frames(cfg) * OD_FRAME;
}

/* One offender. Its callbacks see the whole scene; they may fail the test. */
struct od_offender {
    const char *name;
    /* The disconnects_total label it must be cut with; NULL: it must stay connected. */
    const char *reason;
    /* How its disconnect line ends, e.g. " disconnected (frame too long)." (with reason). */
    const char *log_end;
    /*
     * Connects it (setting sc->off_port and sc->off_conns) and adds its peers (od_add_peer); sets
     * what it will publish that the healthy subscribers must get (sc->want[tag], sc->off_frames,
     * sc->off_bytes) and sc->off_protocol_errors. Called before the first frame of 'P'.
     */
    void (*start)(struct od_scene *sc);
    /* Its act, between rounds of the pump (bounded work). May be NULL. */
    void (*tick)(struct od_scene *sc);
    /*
     * True once its act is over (it may give up on a deadline; the verdict then fails). NULL:
     * when its disconnect is logged (reason set), at once otherwise.
     */
    bool (*done)(struct od_scene *sc);
    /* Its side of the verdict, with the healthy clients still connected. May be NULL. */
    void (*verdict)(struct od_scene *sc);
    void *state;
};

struct od_scene {
    const struct od_config *cfg;
    const struct od_offender *off; /* NULL in the baseline */
    struct rc_server *s;
    int mport;
    int idle_fds;
    struct hx_peer peers[OD_MAX_PEERS]; /* OD_PUB, the healthy subscribers, then the offender's */
    size_t npeers;
    struct hx_check check[OD_SUBS];
    uint32_t want[256];             /* frames each healthy subscriber must get, by tag */
    size_t mark;                    /* the log just before the offender connected */
    int off_port;                   /* local port of the offender's connection that must be cut */
    int off_conns;                  /* connections the offender made */
    uint64_t off_frames, off_bytes; /* complete frames (and their wire bytes) it published */
    int off_protocol_errors;
    int64_t t0_ms, healthy_done_ms, off_done_ms;
};

/* P's stream, built for one framing at a time (and as long as needed so far). */
static uint8_t od_stream[(size_t)OD_MAX_FRAMES * OD_FRAME];
static int od_stream_len32 = -1;
static uint32_t od_stream_frames;

OD_FN void od_build_stream(bool len32, uint32_t frames)
{
    if (frames > OD_MAX_FRAMES)
        fail_msg("a stream of %u frames: at most %d", frames, OD_MAX_FRAMES);
    if (od_stream_len32 == (int)len32 && od_stream_frames >= frames)
        return;
    for (uint32_t k = 0; k < frames; k++)
        od_frame(od_stream + (size_t)k * OD_FRAME, len32, OD_FRAME, 'P', k);
    od_stream_len32 = len32;
    od_stream_frames = frames;
}

/* Adds a peer for the pump to drive; returns its index in sc->peers. */
OD_FN size_t od_add_peer(struct od_scene *sc, struct hx_peer p)
{
    if (sc->npeers == OD_MAX_PEERS)
        fail_msg("od_add_peer: too many peers");
    sc->peers[sc->npeers] = p;
    return sc->npeers++;
}

/* Closes peer i (tracked by the harness or made here) unless it is closed already. */
OD_FN void od_peer_close(struct od_scene *sc, size_t i)
{
    struct hx_peer *p = &sc->peers[i];
    if (p->fd < 0)
        return;
    if (od_owned(p->fd))
        od_close(p->fd);
    else
        rc_close(p->fd);
    p->fd = -1;
    p->closed = true;
}

/* The offender's disconnect line, if logged; its text into buf. */
OD_FN bool od_off_gone(struct od_scene *sc, char *buf, size_t cap)
{
    return sc->off_port && hx_gone(sc->s, sc->mark, sc->off_port, buf, cap);
}

/* The fewest frames of P any healthy subscriber has: how far the relay really is. */
OD_FN uint32_t od_healthy_frames(const struct od_scene *sc)
{
    uint32_t least = UINT32_MAX;
    for (int i = 0; i < OD_SUBS; i++)
        if (sc->check[i].got['P'] < least)
            least = sc->check[i].got['P'];
    return least;
}

OD_FN bool od_healthy_complete(const struct od_scene *sc)
{
    for (int i = 0; i < OD_SUBS; i++)
        if (!hx_check_complete(&sc->check[i]))
            return false;
    return sc->peers[OD_PUB].out_done == sc->peers[OD_PUB].out_len;
}

OD_FN bool od_pump_done(void *arg)
{
    struct od_scene *sc = arg;
    int64_t now = rc_now_ms();
    for (int i = 0; i < OD_SUBS; i++)
        if (sc->check[i].err[0] || sc->peers[OD_SUB0 + i].closed)
            return true; /* reported by od_run */
    if (sc->peers[OD_PUB].closed)
        return true;
    bool healthy = od_healthy_complete(sc);
    if (healthy && !sc->healthy_done_ms)
        sc->healthy_done_ms = now;
    bool off_done = true;
    if (sc->off) {
        char line[256];
        off_done = sc->off->done ? sc->off->done(sc)
                                 : !sc->off->reason || od_off_gone(sc, line, sizeof(line));
        if (off_done && !sc->off_done_ms)
            sc->off_done_ms = now;
    }
    return healthy && off_done;
}

OD_FN void od_pump_tick(void *arg)
{
    struct od_scene *sc = arg;
    if (sc->off && sc->off->tick)
        sc->off->tick(sc);
}

/* The counters with the healthy clients still connected (see the top of this file). */
OD_FN void od_check_counters(struct od_scene *sc)
{
    const struct od_offender *off = sc->off;
    const char *what = off ? off->name : "baseline";
    int r = off && off->reason ? od_reason_index(off->reason) : -1;
    struct od_counts c;
    if (!od_wait_settled(sc->s, sc->mport, &c))
        fail_msg("%s: partial_frame_bytes %.0f and pending_output_bytes %.0f do not come back "
                 "to 0 with every client served",
                 what, c.partial, c.pending);
    char disc[256];
    od_describe_disc(&c, disc, sizeof(disc));
    for (size_t i = 0; i < OD_NREASONS; i++) {
        double want = (int)i == r ? 1 : 0;
        if (c.disc[i] != want)
            fail_msg("%s: disconnects_total{reason=\"%s\"} is %.0f, want %.0f (%s)", what,
                     od_reasons[i], c.disc[i], want, disc);
    }
    double accepted = 1 + OD_SUBS + sc->off_conns;
    double clients = 1 + OD_SUBS + (off && !off->reason ? sc->off_conns : 0);
    if (c.accepted != accepted || c.clients != clients)
        fail_msg("%s: connections_accepted_total %.0f (want %.0f), clients %.0f (want %.0f)", what,
                 c.accepted, accepted, c.clients, clients);
    double pframes = od_frames(sc->cfg), pbytes = (double)od_stream_len(sc->cfg);
    double frames = pframes + (double)sc->off_frames;
    double bytes = pbytes + (double)sc->off_bytes;
    if (c.frames_in != frames || c.bytes_in != bytes)
        fail_msg("%s: frames_received_total %.0f, bytes_received_total %.0f; want %.0f and %.0f "
                 "(only complete frames count)",
                 what, c.frames_in, c.bytes_in, frames, bytes);
    if (c.protocol_errors != sc->off_protocol_errors)
        fail_msg("%s: protocol_errors_total %.0f, want %d", what, c.protocol_errors,
                 sc->off_protocol_errors);
    /* Every healthy subscriber got every frame, P got the offender's; the offender got at most
     * all of P's. */
    double lo = OD_SUBS * frames + (double)sc->off_frames;
    double hi = lo + pframes * sc->off_conns;
    double blo = OD_SUBS * bytes + (double)sc->off_bytes;
    double bhi = blo + pbytes * sc->off_conns;
    if (c.delivered < lo || c.delivered > hi || c.bytes_out < blo || c.bytes_out > bhi)
        fail_msg("%s: frames_delivered_total %.0f (want %.0f..%.0f), bytes_delivered_total %.0f "
                 "(want %.0f..%.0f)",
                 what, c.delivered, lo, hi, c.bytes_out, blo, bhi);
}

/*
 * One run (see the top of this file); off NULL for the baseline. Returns the healthy
 * subscribers' time in ms from the first send to their last byte.
 */
OD_FN int64_t od_run(const struct od_config *cfg, const struct od_offender *off)
{
    static struct od_scene scene;
    struct od_scene *sc = &scene;
    memset(sc, 0, sizeof(*sc));
    sc->cfg = cfg;
    sc->off = off;
    const char *what = off ? off->name : "baseline";
    od_build_stream(cfg->len32, od_frames(cfg));

    sc->s = od_start(cfg->args, &sc->mport);
    sc->idle_fds = rc_fd_count(sc->s);
    /* Fixed receive buffers: read in turn by one thread, subscribers with buffers the kernel
     * grew differently (up to tcp_rmem's maximum) could drift --max-queue apart. */
    int subs[OD_SUBS];
    for (int i = 0; i < OD_SUBS; i++)
        subs[i] = rc_connect_buf(sc->s, OD_SUB_RCVBUF);
    /* The publisher reads (and drops) what it is sent: the offender's frames, if any. */
    sc->peers[OD_PUB] = (struct hx_peer){
        .fd = rc_connect(sc->s), .out = od_stream, .out_len = od_stream_len(cfg), .read = true};
    for (int i = 0; i < OD_SUBS; i++) {
        od_check_init(&sc->check[i], cfg->len32);
        sc->peers[OD_SUB0 + i] =
            (struct hx_peer){.fd = subs[i], .read = true, .check = &sc->check[i]};
    }
    sc->npeers = OD_SUB0 + OD_SUBS;
    sc->want['P'] = od_frames(cfg);
    sc->mark = rc_log_mark(sc->s);
    if (off)
        off->start(sc);
    for (int i = 0; i < OD_SUBS; i++)
        memcpy(sc->check[i].want, sc->want, sizeof(sc->want));

    sc->t0_ms = rc_now_ms();
    struct hx_pump_opts po = {.done = od_pump_done,
                              .tick = od_pump_tick,
                              .arg = sc,
                              .timeout_ms = OD_RUN_MS,
                              .stall_ms = OD_STALL_MS};
    const char *why;
    bool ok = hx_pump(sc->s, sc->peers, sc->npeers, &po, &why);

    char got[512];
    for (int i = 0; i < OD_SUBS; i++) {
        hx_check_describe(&sc->check[i], got, sizeof(got));
        if (sc->check[i].err[0])
            fail_msg("%s: healthy subscriber %d got a wrong frame: %s", what, i, got);
        if (sc->peers[OD_SUB0 + i].closed) {
            rc_dump(sc->s);
            fail_msg("%s: healthy subscriber %d (port %d) was disconnected; it had %s", what, i,
                     rc_port_of(sc->peers[OD_SUB0 + i].fd), got);
        }
    }
    if (sc->peers[OD_PUB].closed) {
        rc_dump(sc->s);
        fail_msg("%s: the healthy publisher was disconnected after sending %zu of %zu bytes", what,
                 sc->peers[OD_PUB].out_done, od_stream_len(cfg));
    }
    if (!ok) {
        char line[256] = "";
        bool gone = od_off_gone(sc, line, sizeof(line));
        hx_check_describe(&sc->check[0], got, sizeof(got));
        rc_dump(sc->s);
        fail_msg("%s: %s after %lld ms: healthy subscriber 0 has %s; the publisher sent %zu of "
                 "%zu bytes; the offender %s%s%s",
                 what, strcmp(why, "stall") ? why : "nothing moved for 15 s",
                 (long long)(rc_now_ms() - sc->t0_ms), got, sc->peers[OD_PUB].out_done,
                 od_stream_len(cfg), gone ? "logged \"" : "was not disconnected", gone ? line : "",
                 gone ? "\"" : "");
    }
    hx_expect_alive(sc->s, "during the run");
    int64_t elapsed = sc->healthy_done_ms - sc->t0_ms;

    /* Nothing more than the frames may arrive (the server sends nothing of its own). */
    for (int i = 0; i < OD_SUBS; i++) {
        uint8_t extra[256];
        ssize_t n = rc_recv_now(sc->peers[OD_SUB0 + i].fd, extra, sizeof(extra));
        if (n > 0)
            fail_msg("%s: healthy subscriber %d received %zd bytes more than the frames sent", what,
                     i, n);
    }
    if (off) {
        char line[256];
        if (off->reason) {
            if (!od_off_gone(sc, line, sizeof(line))) {
                rc_dump(sc->s);
                fail_msg("%s: never disconnected (want reason %s)", what, off->reason);
            }
            size_t n = strlen(line), m = strlen(off->log_end);
            if (n < m || strcmp(line + n - m, off->log_end) != 0)
                fail_msg("%s: disconnected with \"%s\", want a line ending \"%s\"", what, line,
                         off->log_end);
        } else if (od_off_gone(sc, line, sizeof(line))) {
            fail_msg("%s: must stay connected, but \"%s\"", what, line);
        }
        if (off->verdict)
            off->verdict(sc);
    }
    od_check_counters(sc);

    for (size_t i = 0; i < sc->npeers; i++)
        od_peer_close(sc, i);
    for (int i = 0; i < OD_SUBS; i++)
        hx_check_free(&sc->check[i]);
    od_finish(sc->s, sc->mport, sc->idle_fds, cfg->len32, what);
    return elapsed;
}

/* The case: (baseline, with the offender) pairs until the healthy time is within its bound. */
OD_FN void od_check(const struct od_config *cfg, const struct od_offender *off)
{
    int64_t best = INT64_MAX;
    char summary[512] = "";
    size_t len = 0;
    for (int attempt = 1; attempt <= HG_ATTEMPTS; attempt++) {
        int64_t base = od_run(cfg, NULL);
        if (base < best)
            best = base;
        int64_t bound = HG_FACTOR * best > OD_FLOOR_MS ? HG_FACTOR * best : OD_FLOOR_MS;
        int64_t with = od_run(cfg, off);
        print_message("odd %s, attempt %d: healthy subscribers done in %lld ms with it, %lld ms "
                      "without (fastest %lld ms); bound max(%d ms, %d x %lld ms) = %lld ms\n",
                      off->name, attempt, (long long)with, (long long)base, (long long)best,
                      OD_FLOOR_MS, HG_FACTOR, (long long)best, (long long)bound);
        if (with <= bound)
            return;
        if (len < sizeof(summary))
            len += (size_t)snprintf(summary + len, sizeof(summary) - len,
                                    "; %lld ms against %lld ms (bound %lld ms)", (long long)with,
                                    (long long)best, (long long)bound);
    }
    fail_msg("with %s, the healthy subscribers are slowed in every attempt (with it; fastest "
             "without it)%s: the offender holds them hostage",
             off->name, summary);
}

#endif
