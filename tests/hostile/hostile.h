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

#endif
