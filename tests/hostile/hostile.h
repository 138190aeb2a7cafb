/*
 * Helpers shared by the bug-regression programs in tests/hostile (test_bug_*.c), on top of the
 * integration harness: a bounded scrape of the metrics endpoint, a numbered-frame checker, and
 * a pump that drives many clients at once from one thread.
 *
 * Like the harness, every wait is bounded in time and every loop in count.
 */
#ifndef RINGCAST_TEST_HOSTILE_H
#define RINGCAST_TEST_HOSTILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

/* ---- the server ---- */

/*
 * rc_start() with "--metrics 127.0.0.1:0" prepended to the NULL-terminated arguments; *mport
 * gets the metrics port from the "Metrics at: http://127.0.0.1:PORT/metrics" line.
 */
struct rc_server *hx_start_metrics(int *mport, const char *arg, ...);

/* Fails the test (after dumping the server's output) unless the server is still running. */
void hx_expect_alive(struct rc_server *s, const char *when);

/*
 * Copies into buf the first log line after mark saying that the client on local port `port`
 * disconnected (any reason). Returns false if there is none.
 */
bool hx_gone(struct rc_server *s, size_t mark, int port, char *buf, size_t cap);

/* ---- the metrics endpoint ---- */

/*
 * One request "GET path" to the metrics port, bounded by timeout_ms (connect, send and the answer
 * until the server closes; at most 1 MiB is kept). Returns the HTTP status, 0 when no complete
 * answer came in time (the connection is closed either way). *resp (when not NULL) gets the
 * malloc'ed NUL-terminated answer, owned by the caller, or NULL when the status is 0.
 */
int hx_http_get(struct rc_server *s, int mport, const char *path, int timeout_ms, char **resp);

/* The value of the sample named exactly name (labels included) in a /metrics answer. */
bool hx_metric(const char *resp, const char *name, double *value);

/* Scrapes /metrics and returns the value of the sample name; fails the test when it cannot. */
double hx_scrape(struct rc_server *s, int mport, const char *name);

/* ---- numbered frames ---- */

/*
 * Test frames say who sent them and in which order: the payload is a tag byte (printable, never
 * '\n'), the sequence number as 8 hex digits, then filler letters derived from both.
 * hx_frame_line builds a line frame of exactly len bytes (the '\n' included), hx_frame_len32 a
 * len32 frame whose payload is len bytes (4 + len on the wire); len >= 10 for lines, >= 9 for
 * len32. Both return the bytes written.
 */
size_t hx_frame_line(uint8_t *buf, size_t len, uint8_t tag, uint32_t seq);
size_t hx_frame_len32(uint8_t *buf, size_t len, uint8_t tag, uint32_t seq);

/*
 * Checks a received stream of such frames, fed in pieces of any size: every frame must be intact,
 * and each tag's frames must come in sequence (0, 1, 2...) with no gap. want[tag] is the number of
 * frames expected from that tag (0: none may come). The first error is kept in err.
 */
struct hx_check {
    bool len32;             /* framing */
    uint32_t want[256];     /* frames expected per tag */
    uint32_t got[256];      /* frames seen per tag (the next sequence number expected) */
    uint8_t *buf;           /* incomplete frame carried over */
    size_t len, cap;        /* bytes in buf, its size */
    uint64_t frames, bytes; /* totals */
    char err[256];          /* first error, empty when none */
};

void hx_check_init(struct hx_check *c, bool len32);
void hx_check_free(struct hx_check *c);
/* Feeds received bytes; returns false once an error was found (err says which). */
bool hx_check_feed(struct hx_check *c, const uint8_t *p, size_t n);
/* True when every tag delivered exactly what want says (and no error). */
bool hx_check_complete(const struct hx_check *c);
/* One line summarising progress per tag, for diagnosis. */
void hx_check_describe(const struct hx_check *c, char *buf, size_t cap);

/* ---- driving many clients ---- */

/*
 * A client driven by hx_pump(). It sends out[0..out_len) as its socket takes it, at most chunk
 * bytes per send() (0: no limit), and reads what arrives when read is set, feeding it to check or
 * on_data when set; a client with read unset never reads (a stuck reader).
 */
struct hx_peer {
    int fd;
    const uint8_t *out;
    size_t out_len;
    size_t chunk;
    bool read;
    struct hx_check *check;                                 /* fed what arrives, or NULL */
    bool (*on_data)(void *arg, const uint8_t *p, size_t n); /* or this (false: stop, bad data) */
    void *data_arg;
    /* progress, kept by hx_pump */
    size_t out_done;
    uint64_t in_done;
    bool closed; /* the server closed or reset it (a send or a read failed) */
};

/* How hx_pump() runs and when it stops. */
struct hx_pump_opts {
    bool (*done)(void *arg); /* true: finished */
    void (*tick)(void *arg); /* called between rounds (may be NULL); does bounded work only */
    void *arg;
    int timeout_ms; /* give up after this long */
    int stall_ms;   /* give up when no peer sent or received a byte for this long (0: never) */
};

/*
 * Drives the peers until opts->done says so, the time is up, nothing moved for stall_ms, or a
 * check fails. A peer closed by the server just stops. Returns true when done() said so; *why
 * (when not NULL) gets "done", "timeout", "stall" or "check". Fails the test when the server dies.
 */
bool hx_pump(struct rc_server *s, struct hx_peer *peers, size_t n, const struct hx_pump_opts *opts,
             const char **why);

/* ---- connection and metrics-endpoint abuse (test_conn_*.c, test_metrics_abuse.c) ---- */

/* hx_start_metrics with extra environment for the server (NULL-terminated "NAME=VALUE"). */
struct rc_server *hx_start_metrics_env(int *mport, const char *const *env, const char *arg, ...);

/* Sum of the samples whose name starts with prefix, e.g. "ringcast_disconnects_total{". */
double hx_metric_sum(const char *resp, const char *prefix);

/*
 * Scrapes until the sample name equals want (bounded by timeout_ms, a scrape every 20 ms or so).
 * Returns the last value seen; fails the test when no scrape answers.
 */
double hx_wait_metric(struct rc_server *s, int mport, const char *name, double want,
                      int timeout_ms);

/* Waits (bounded) until the server has exactly want descriptors open; fails the test otherwise. */
void hx_expect_fds(struct rc_server *s, int want, const char *when);

/*
 * The metrics agree with themselves and with the test: scrapes once and fails unless clients ==
 * want_clients and connections_accepted_total - sum(disconnects_total) == clients.
 */
void hx_expect_metrics_consistent(struct rc_server *s, int mport, double want_clients);

/*
 * A fresh pair of clients still exchanges frames: b connects, then a sends a short numbered line
 * every 50 ms until b has one (bounded), which needs no log line (works with -q). Both are closed.
 */
void hx_expect_relays(struct rc_server *s);

/* A raw HTTP exchange with the metrics port. */
struct hx_http {
    int status;  /* from "HTTP/1.1 NNN", 0 when no status line came */
    char *resp;  /* malloc'ed, NUL-terminated answer (may be empty), owned by the caller */
    size_t len;  /* its length */
    bool closed; /* the server closed (EOF) or reset the connection */
    bool reset;  /* ... with a reset */
    size_t sent; /* request bytes the server took */
    int64_t ms;  /* connect to close (or to the time-out) */
};
/*
 * Sends req (as the socket takes it, within timeout_ms, stopping quietly when the server closes)
 * and reads until the server closes or timeout_ms passes (at most 1 MiB is kept).
 */
void hx_http_raw(struct rc_server *s, int mport, const void *req, size_t len, int timeout_ms,
                 struct hx_http *out);
/* True when resp is a whole HTTP answer: a header and exactly Content-Length bytes of body. */
bool hx_http_complete(const char *resp, size_t len);
/* Number of status lines ("HTTP/1.") at the start of a line in resp. */
int hx_http_answers(const char *resp, size_t len);

/*
 * A healthy stream beside an offender: one publisher sends frames numbered 0..frames-1 of
 * frame_len bytes (line framing, tag), per_sec a second (0: as fast as the relay takes them), and
 * nsubs subscribers read and check everything (hx_check). Registration is awaited through the
 * log, or through the metrics gauge when mport > 0 (servers run with -q). The publisher never runs
 * more than 256 KiB ahead of the slowest subscriber.
 *
 * Each (subscriber, frame) pair's delivery latency is recorded, as in the hostage tests' fixed-rate
 * mode: from the frame's intended send time, t0 + seq / per_sec (a publisher held back by a slow
 * relay counts: no coordinated omission), or from the moment hx_stream_finish lifted the pace if
 * that came first, to the step that read the frame's last byte.
 */
#define HX_STREAM_MAX_SUBS 8
struct hx_stream {
    struct rc_server *s;
    int pub, subs[HX_STREAM_MAX_SUBS], nsubs;
    struct hx_check checks[HX_STREAM_MAX_SUBS];
    uint8_t *data, *scratch;
    size_t frame_len, len, sent;
    size_t until; /* when not 0, the publisher stops there (the test may move or clear it) */
    uint32_t frames, per_sec;
    int64_t t0, next_alive; /* t0: frame k is due at t0 + k / per_sec (the test may move it) */
    uint32_t pace;          /* per_sec as started (hx_stream_finish clears per_sec) */
    int64_t lifted_us;      /* when hx_stream_finish lifted the pace; INT64_MAX before */
    int32_t *lat_us;        /* [sub * frames + seq]: delivery latency, -1 until delivered */
};
void hx_stream_start(struct hx_stream *st, struct rc_server *s, int mport, int nsubs, uint8_t tag,
                     uint32_t frames, size_t frame_len, uint32_t per_sec);
/* Sends what is due, reads what came (waiting at most wait_ms); fails on a bad or lost byte. */
void hx_stream_step(struct hx_stream *st, int wait_ms);
/* True once every subscriber has every frame. */
bool hx_stream_complete(const struct hx_stream *st);
/* Sends the rest at full speed and waits (bounded) until every subscriber has everything. */
void hx_stream_finish(struct hx_stream *st, int timeout_ms);
/*
 * Goes on at the stream's pace (per_sec) until every subscriber has everything, for at most the
 * rest of the schedule plus timeout_ms; fails the test if they do not. Unlike hx_stream_finish,
 * the pace is kept, so every frame's latency measures the relay under the case, not a burst.
 */
void hx_stream_run_out(struct hx_stream *st, int timeout_ms);
/* Closes the publisher and the subscribers, frees the buffers. */
void hx_stream_close(struct hx_stream *st);

/* The stream's delivery latencies so far, over every (subscriber, frame) pair delivered. */
struct hx_latency {
    int64_t p50_us, p99_us, max_us; /* nearest-rank percentiles and the maximum */
    size_t samples, missing;        /* pairs delivered; pairs not (yet) delivered */
};
void hx_stream_latency(const struct hx_stream *st, struct hx_latency *out);
/* hx_stream_latency, one line about it on stdout (prefixed with what); returns p99_us. */
int64_t hx_stream_p99_us(const struct hx_stream *st, const char *what);

/* ---- the healthy side with and without the offender (issue 8) ---- */

/*
 * Stops s (SIGTERM, every client gone) and fails the test unless it exits 0 within RC_WAIT_MS:
 * the check rc_teardown makes, made now so that a test's successive servers do not pile up.
 */
void hx_stop(struct rc_server *s, const char *what);

/*
 * The run without the offender: on s, freshly started with the case's options (metrics at mport;
 * quiet: it runs with -q, so clients are counted through the metrics gauge, not the log), the
 * case's healthy stream (hx_stream_start's arguments) run out at its pace (hx_stream_run_out);
 * then the metrics must agree, every client closes, the descriptor count returns to its idle
 * value and s is stopped (hx_stop). Returns the healthy subscribers' p99 delivery latency in us.
 */
int64_t hx_stream_alone(struct rc_server *s, int mport, bool quiet, int nsubs, uint8_t tag,
                        uint32_t frames, size_t frame_len, uint32_t per_sec);

/*
 * The comparison the readers, writers and hostage cases make (hg_check_fixed_rate's policy, with
 * its constants from hostage.h): up to HG_ATTEMPTS pairs of runs, run(arg, false) without the
 * offender then run(arg, true) with it, each on a fresh server, each returning the healthy
 * subscribers' p99 delivery latency in us after checking everything else (a failed check fails the
 * test at once, in any attempt). Passes at the first run with the offender whose p99 is at most
 * max(HG_RATE_FLOOR_MS, HG_FACTOR x the lowest baseline p99 so far); fails, with every attempt's
 * figures and bound, when none is: load from elsewhere slows some runs, a hostage effect all.
 */
void hx_compare_p99(const char *name, int64_t (*run)(void *arg, bool offender), void *arg);

#endif
