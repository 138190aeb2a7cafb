/*
 * The relay test harness (on top of support.h): runs the real ringcast binary ($RINGCAST_BIN) as a
 * child process and drives it over loopback sockets.
 *
 * Every wait is bounded in time and every loop in count. Synchronisation is done on the server's
 * log lines (stdout, drained by a background thread so the server never blocks on a full pipe) and
 * on byte counts, never on sleeps.
 *
 * The rc_ functions that can fail in a way that makes a test meaningless (a client cannot connect,
 * an expected log line never comes) fail the current cmocka test themselves. Servers and client
 * sockets made through the harness are tracked and released by rc_teardown(), which every test
 * must use as its teardown.
 */
#ifndef RINGCAST_TEST_HARNESS_H
#define RINGCAST_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "support.h"

/* Generous bounds: a loaded 2-core machine running the sanitizer build must never hit them. */
#define RC_START_TIMEOUT_MS 10000
#define RC_WAIT_MS 15000
#define RC_IO_MS 20000

struct rc_server {
    pid_t pid;
    int port;
    char host[64];         /* as printed in the start line: 127.0.0.1 or ::1 */
    bool exited;           /* reaped */
    int status;            /* waitpid status once exited */
    bool expect_dead;      /* the test stopped or killed it on purpose; teardown checks nothing */
    struct rc_logbuf *out; /* stdout */
    struct rc_logbuf *err; /* stderr */
    struct rc_reader *reader;
};

/* Options for rc_start_ex / rc_run_ex. argv and env are NULL-terminated (env as "NAME=VALUE"). */
struct rc_opts {
    const char *const *argv; /* arguments after the binary name */
    const char *const *env;  /* extra environment; ADDRESS, PORT and JOURNAL_STREAM are unset
                                unless given here */
    bool no_port;            /* do not prepend "--port 0" */
    /* 1 or 2: set JOURNAL_STREAM to the device:inode of the server's stdout or stderr pipe, as
     * systemd does when that stream is the journal. 0: not set. */
    int journal_fd;
};

/* ---- test program set-up ---- */

/*
 * Call first in main(). Returns 0 when the tests can run; 77 (skip) when the kernel lacks what
 * ringcast needs (the server says so and exits 1 at start); exits with 1 when $RINGCAST_BIN is
 * unset or the server fails to start for another reason.
 */
int rc_init(void);

/* cmocka teardown for every test: closes tracked clients, stops servers, checks they exited 0. */
int rc_teardown(void **state);

/* ---- the server ---- */

/*
 * Starts "$RINGCAST_BIN --port 0 ARGS..." (ARGS NULL-terminated) and waits for its start line.
 * Fails the test if it does not start. The server is owned by the harness.
 */
struct rc_server *rc_start(const char *arg, ...);
struct rc_server *rc_start_ex(const struct rc_opts *opts);

/*
 * Like rc_start_ex but returns NULL instead of failing when the server exits before printing its
 * start line; *status then holds its wait status.
 */
struct rc_server *rc_try_start(const struct rc_opts *opts, int *status);

/*
 * Runs the binary to completion (for CLI errors, --help...). Returns the wait status, or -1 when
 * it did not exit within timeout_ms (it is then killed). *out and *err (if not NULL) receive
 * malloc'ed NUL-terminated copies of stdout and stderr, owned by the caller.
 */
int rc_run(const struct rc_opts *opts, int timeout_ms, char **out, char **err);

/* True while the process has not exited (reaps it if it has). */
bool rc_alive(struct rc_server *s);

/* Sends a signal to the server. */
void rc_signal(struct rc_server *s, int sig);

/*
 * Waits up to timeout_ms for the server to exit. Returns the wait status, or -1 on timeout.
 * Marks the server as stopped on purpose.
 */
int rc_wait_exit(struct rc_server *s, int timeout_ms);

/* Number of open descriptors of the server (/proc/PID/fd), -1 on error. */
int rc_fd_count(struct rc_server *s);

/* Lowest descriptor number the server does not have open. */
int rc_lowest_free_fd(struct rc_server *s);

/* Resident set size of the server in KiB (/proc/PID/status VmRSS), -1 on error. */
long rc_rss_kb(struct rc_server *s);

/* CPU time (user + system, all threads) the server has used, in milliseconds; -1 on error. */
long rc_cpu_ms(struct rc_server *s);

/* Waits (bounded, polling /proc) until rc_fd_count() == want; returns the last count seen. */
int rc_wait_fd_count(struct rc_server *s, int want, int timeout_ms);

/* ---- the server's log ---- */

/* A position in the server's stdout: searches from a mark see only lines that start after it. */
size_t rc_log_mark(struct rc_server *s);

/*
 * Waits up to timeout_ms for a stdout line at or after mark that contains needle. Returns true
 * when found. On timeout prints the server's recent output to help diagnosis.
 */
bool rc_log_wait(struct rc_server *s, size_t mark, const char *needle, int timeout_ms);

/* Waits until at least count stdout lines after mark contain needle. Returns the count seen. */
size_t rc_log_wait_count(struct rc_server *s, size_t mark, const char *needle, size_t count,
                         int timeout_ms);

/* Number of stdout lines after mark that contain needle (no waiting). */
size_t rc_log_count(struct rc_server *s, size_t mark, const char *needle);

/* Copies the first stdout line after mark containing needle into buf; false if none. */
bool rc_log_find(struct rc_server *s, size_t mark, const char *needle, char *buf, size_t cap);

/* Number of complete lines on stderr so far, and a test on its content. */
size_t rc_err_lines(struct rc_server *s);
bool rc_err_contains(struct rc_server *s, const char *needle);
/* A malloc'ed, NUL-terminated copy of the server's stderr so far (the caller frees it). */
char *rc_err_text(struct rc_server *s);

/* Waits until stderr has at least count complete lines; returns the count seen. */
size_t rc_err_wait_lines(struct rc_server *s, size_t count, int timeout_ms);

/* Prints the server's stdout and stderr to the test's stderr (diagnosis). */
void rc_dump(struct rc_server *s);

/* Prints the server's TCP sockets as `ss` sees them (diagnosis only; silent without `ss`). */
void rc_dump_sockets(struct rc_server *s);

/* ---- clients ---- */

/*
 * Connects a client to the server (its address family), non-blocking and close-on-exec, with
 * TCP_NODELAY. rcvbuf > 0 sets SO_RCVBUF before connecting. The socket is tracked and closed at
 * teardown. Does not wait for the server to register it.
 */
int rc_connect_raw(struct rc_server *s, int rcvbuf);

/* Like rc_connect_raw, to an explicit loopback address ("127.0.0.1" or "::1"). */
int rc_connect_addr(struct rc_server *s, const char *host, int rcvbuf);

/* Socket options set before connect() (0: the system's default): the MSS a client announces in
 * its SYN, like its buffer sizes, can only be chosen then. */
struct rc_sockopts {
    int rcvbuf; /* SO_RCVBUF */
    int sndbuf; /* SO_SNDBUF */
    int maxseg; /* TCP_MAXSEG */
    /* A local address to bind first, of the server's family (NULL: the kernel's choice), e.g.
     * "127.0.0.2": loopback holds all of 127/8, so one host can be several peers. */
    const char *local;
    /* The port to connect to (0: the server's, from its start line): another listener's. */
    int port;
};

/* rc_connect_addr with those options; fails the test when one cannot be set. */
int rc_connect_opts(struct rc_server *s, const char *host, const struct rc_sockopts *o);

/*
 * Waits for the start line of one of the server's extra listeners (--listen), "Listening at:
 * ADDR:PORT (FLAGS)", whose FLAGS are exactly @flags ("role=sub", "role=pub,noauth"). Returns its
 * port; copies its address (without brackets) to @host when not NULL, and the whole line to @line
 * when not NULL. Fails the test when no such line comes.
 */
int rc_listener_port(struct rc_server *s, const char *flags, char *host, size_t hcap, char *line,
                     size_t lcap);

/* Connects to @host:@port (another listener of @s) and waits until the server registered it. */
int rc_connect_to(struct rc_server *s, const char *host, int port);

/* rc_connect_raw, then waits for the server's "ADDR:PORT connected." line for this client. */
int rc_connect(struct rc_server *s);
int rc_connect_buf(struct rc_server *s, int rcvbuf);

/* Connects n clients and waits until the server has registered all of them. */
void rc_connect_many(struct rc_server *s, int *fds, int n);

/* Local port of a socket (what the server logs). */
int rc_port_of(int fd);

/* Builds the log needle ":PORT <what>" for a client port, e.g. what = "connected." */
void rc_needle(char *buf, size_t cap, int port, const char *what);

/*
 * Waits for the log line ":PORT <what>" (port: rc_port_of() of the client) after mark; fails the
 * test on timeout.
 */
void rc_wait_client_log(struct rc_server *s, size_t mark, int port, const char *what);

/* Closes a tracked client (normal FIN). Returns its local port, for rc_wait_client_log(). */
int rc_close(int fd);

/* Closes a tracked client with SO_LINGER 0, so the server sees a reset. Returns its port. */
int rc_reset(int fd);

/* Forgets a descriptor (the caller closes it). */
void rc_untrack(int fd);

/* ---- client I/O (all bounded) ---- */

/* Sends all len bytes within timeout_ms; fails the test otherwise. */
void rc_send(int fd, const void *buf, size_t len);
void rc_send_str(int fd, const char *str);

/*
 * Sends as much of len as the peer takes within timeout_ms, stopping quietly at an error (the
 * server may close the connection on purpose). Returns the bytes sent.
 */
size_t rc_send_lenient(int fd, const void *buf, size_t len, int timeout_ms);

/* Sends at most len bytes without waiting; returns bytes taken (0 when the socket is full). */
size_t rc_send_some(int fd, const void *buf, size_t len);

/*
 * Reads exactly len bytes within timeout_ms. Returns len, or fewer when the peer closed, reset or
 * the time ran out (*why gets "eof", "reset", "timeout" or "error" when not NULL).
 */
size_t rc_recv_exact(int fd, void *buf, size_t len, int timeout_ms, const char **why);

/* Reads len bytes and checks they equal want; fails the test with a readable diff otherwise. */
void rc_expect(int fd, const void *want, size_t len);
void rc_expect_str(int fd, const char *want);

/*
 * Reads until EOF or reset within timeout_ms. Stores up to cap bytes into buf (may be NULL) and
 * returns the number of bytes read before the end; returns (size_t)-1 on timeout.
 */
size_t rc_recv_until_eof(int fd, void *buf, size_t cap, int timeout_ms);

/* Fails the test unless the peer closes (EOF or reset) with no data first. */
void rc_expect_closed(int fd);

/*
 * Negative check: true when nothing arrives within ms (data or EOF). Passing it proves nothing;
 * failing it (data arrived) is a real error. Never needed to make a test pass.
 */
bool rc_quiet(int fd, int ms);

/* Bytes readable right now without blocking, into buf (up to cap); 0 if none, -1 EOF/error. */
ssize_t rc_recv_now(int fd, void *buf, size_t cap);

/*
 * Moves data between many sockets at once: each flow sends out[0..out_len) and reads exactly
 * in_len bytes into in. Returns true when every flow completed within timeout_ms.
 */
struct rc_flow {
    int fd;
    const uint8_t *out;
    size_t out_len;
    size_t out_done;
    uint8_t *in;
    size_t in_len;
    size_t in_done;
    bool closed; /* peer closed or reset while data was still wanted */
};
bool rc_transfer(struct rc_flow *flows, size_t n, int timeout_ms);

/* ---- /metrics ---- */

/* GET /metrics from 127.0.0.1:@mport (the server's --metrics); fails the test unless 200.
 * The response, malloc'ed (the caller frees it). */
char *rc_metrics_get(struct rc_server *s, int mport);

/* The value of the sample named exactly @name (labels included) in @text, or -1 when absent. */
double rc_metrics_sample(const char *text, const char *name);

/* The sum of every sample of the family @name (any labels) in @text; -1 when there is none. */
double rc_metrics_sum(const char *text, const char *name);

/* Scrapes until the sample @name equals @want (within RC_WAIT_MS); fails with the last scrape
 * and the server's log otherwise. */
void rc_metrics_wait(struct rc_server *s, int mport, const char *name, double want);

/* ---- misc ---- */

/* Monotonic milliseconds. */
int64_t rc_now_ms(void);

/* Test data: a numbered line frame "<prefix><seq 8 digits> <filler>\n" of exactly len bytes. */
size_t rc_make_line(char *buf, size_t len, const char *prefix, uint32_t seq);

/* Appends a len32 frame (big-endian header + payload) to buf; returns bytes written. */
size_t rc_make_len32(uint8_t *buf, const void *payload, uint32_t n);

/* True if ::1 can be bound (IPv6 available on loopback). */
bool rc_have_ipv6(void);

/* True if the test binary itself runs under AddressSanitizer (so RSS figures are meaningless). */
bool rc_under_asan(void);

#endif
