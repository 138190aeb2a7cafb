/*
 * The server loop's private state, shared by the files of the loop family: loop.c (the data
 * path: completions, receiving, verdicts), loop_send.c (sending), accept.c (new connections,
 * descriptor exhaustion), listen.c (the listeners and their roles), lifecycle.c (signals, the
 * tick, the drain) and loop_setup.c (creation and teardown). Only these files prepare SQEs; the
 * pure modules (ingest, fanout, flow, bcast) decide, the loop acts.
 */
#ifndef RINGCAST_LOOP_INT_H
#define RINGCAST_LOOP_INT_H

#include <liburing.h>
#include <linux/time_types.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "conn.h"
#include "httpd.h"
#include "ringcast/auth.h"
#include "ringcast/authpenalty.h"
#include "loop.h"
#include "ringcast/bcast.h"
#include "ringcast/fanout.h"
#include "ringcast/flow.h"
#include "ringcast/ingest.h"
#include "ringcast/metrics.h"
#include "ringcast/opts.h"
#include "ringcast/peercount.h"
#include "ringcast/ring.h"
#include "ringcast/stats.h"
#include "userdata.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define NSEC 1000000000ull
#define TICK_NS (100 * 1000 * 1000ull)
#define ACCEPT_BACKOFF_NS (100 * 1000 * 1000ull)
#define RECV_BUF_COUNT 256u
#define RECV_BUF_SIZE (64u << 10)
#define RECV_BGID 1
#define SQ_ENTRIES 4096u
#define CQ_ENTRIES 65536u
/* Descriptors besides clients: the default listener, ring, signalfd, spare, stdio, metrics and
 * some slack (each --listen adds one more: fit_descriptor_limit). */
#define FD_RESERVE 32u
/* Relay listeners: the default one (index 0) and --listen's. */
#define LISTENERS_MAX (1u + OPTS_LISTEN_MAX)
/* Paused publishers retried per batch at most: bounds the work one batch does for them. */
#define RESUME_PER_BATCH 256u

/* sendmsg headers prepared in one batch, at most (then the loop submits early). */
#define LOOP_MSG_POOL 256u

struct loop_msg {
    struct msghdr hdr;
    struct iovec iov[FANOUT_IOV_MAX];
};

/*
 * A relay listener (listen.c opens, names and closes them; accept.c accepts on them). Index 0 is
 * the default one: --address/--port, or the socket systemd passed; the others come from --listen
 * and are always bound here. Each has its own multishot accept, whose user_data carries the index.
 */
struct listener {
    int fd;                    /* -1 once closed (the drain) */
    uint8_t role;              /* enum listen_role: what its clients may do */
    bool auth_required;        /* --auth-file and not noauth: clients AUTH first */
    bool tls;                  /* ,tls: clients speak TLS (loop_tls.c) */
    bool proxy;                /* ,proxy: a PROXY protocol header comes first (accept.c) */
    bool armed;                /* its accept is outstanding */
    rlim_t fd_limit;           /* RLIMIT_NOFILE when its accept was armed */
    uint64_t accepted;         /* connections registered through it */
    char name[NETADDR_STRLEN]; /* the address it listens on, as logs and metrics show it */
    const char *flags;         /* for its start line (--listen's; NULL for the default) */
};

/* A singly linked list of slots through one of struct conn's next_* fields. */
struct slot_list {
    uint32_t head, tail;
};

struct loop {
    const struct opts *o;
    struct io_uring ring;
    bool ring_ready;
    struct ring_features feat;
    struct ring_bufs bufs;
    struct bcast log;
    struct flow flow;
    struct fanout fanout;
    struct ingest ingest;
    bool log_registered; /* the log is a fixed buffer for SEND_ZC */
    bool log_register_tried;
    bool zc_refused; /* a zero-copy send failed to pin its pages: copy from now on */
    struct conn_table conns;
    uint64_t held_bytes;  /* partial frames and drop remainders: --max-partial-memory */
    uint64_t stash_bytes; /* paused publishers' bytes that did not fit the log yet */
    struct loop_msg msg_pool[LOOP_MSG_POOL];
    unsigned msg_used;

    struct listener listeners[LISTENERS_MAX];
    uint32_t nlisteners;
    int signal_fd;
    int spare_fd;         /* released on EMFILE to shed one connection cleanly (libuv's trick) */
    bool accept_idle;     /* some open listener has no accept armed: arm after the batch */
    rlim_t fd_limit_seen; /* to report a change once */
    uint64_t accept_resume_ns;

    uint64_t *pack_scratch;  /* one per client slot: the pack rule's pacer (loop_pack_tick) */
    struct slot_list paused; /* publishers waiting for flow control, oldest first */
    struct slot_list doomed; /* verdicts to apply at the end of the batch */
    struct slot_list rearm;  /* recvs to arm at the end of the batch */
    struct slot_list reap;   /* slots to free at the end of the batch */
    uint32_t nopen;
    bool head_moved; /* the log grew in this batch: clients need their sends */

    bool draining, done;
    uint64_t drain_deadline_ns, hard_deadline_ns;
    uint64_t now_ns;
    uint64_t next_stats_ns, last_reject_log_ns;
    uint64_t rejects_unlogged;        /* --max-clients refusals since the last log line */
    uint64_t rejects_per_ip_unlogged; /* --max-clients-per-ip refusals since then */
    union netaddr last_per_ip_reject; /* named in that line */
    struct peercount peers;           /* --max-clients-per-ip: open connections per address */
    bool auth_on;                     /* --auth-file: tokens loaded (loop_auth.c) */
    struct auth_tokens tokens;
    struct authpenalty penalty; /* repeated AUTH failures per address */
    bool tls_on;                /* some listener is tls: the context is loaded (loop_tls.c) */
    struct tls_ctx tls;
    uint32_t tls_handshaking;    /* TLS clients whose handshake is not done */
    uint64_t tls_busy_logged_ns; /* --max-tls-handshakes refusals: logged once a second */
    struct stats stats, stats_prev;

    struct signalfd_siginfo siginfo;
    struct __kernel_timespec tick_ts;

    struct httpd httpd; /* --metrics */
    bool httpd_on;
    uint64_t start_ns;
    uint64_t watchdog_ns, next_watchdog_ns; /* systemd watchdog period, 0 when off */
    uint64_t next_status_ns;
    uint32_t status_clients; /* client count last sent in STATUS= */
    char features[256];
};

static inline struct conn *conn_at(struct loop *l, uint32_t slot)
{
    return &l->conns.slots[slot];
}

/* ---- loop.c ---- */
uint64_t loop_clock_ns(void);
struct io_uring_sqe *loop_sqe(struct loop *l, enum ud_op op, const struct conn *c);
void loop_cancel(struct loop *l, enum ud_op op, const struct conn *c);
/* Register a new connection (accept.c) and start reading it. */
void loop_conn_open(struct loop *l, struct conn *c);
/* @c receives from now on, from the head (at accept, or once it authenticated). */
void loop_conn_start_receiving(struct loop *l, struct conn *c);
/* The bytes @c sent (the socket's, or TLS plaintext): the gates, then ingest. */
void loop_conn_input(struct loop *l, struct conn *c, const uint8_t *p, size_t len);
/* A gate (PROXY, TLS, AUTH) let @c through: once none is left, it receives (unless pub-only). */
void loop_gate_passed(struct loop *l, struct conn *c);
/* Whether a gate still holds @c (it is muted until none does). */
static inline bool conn_gated(const struct conn *c)
{
    return c->proxy_pending || c->auth != CONN_AUTH_NONE || (c->tls && !c->tls->established);
}
/* A verdict: @c closes with @reason at the end of the batch. */
void loop_doom(struct loop *l, struct conn *c, enum disconnect_reason reason);
/* Whether @c is open and no verdict is pending on it. */
static inline bool conn_live(const struct conn *c)
{
    return c->state == CONN_OPEN && !c->doomed;
}
/* Free @c's slot (after the batch) once the kernel holds nothing of it any more. */
void loop_maybe_finish_close(struct loop *l, struct conn *c);
/* ingest's callbacks (@ctx is the loop; loop_setup.c wires them): the log is full, make room for
 * @len bytes (true if they fit now); frames were appended. */
bool loop_make_room(void *ctx, size_t len);
void loop_on_frames(void *ctx, uint32_t origin, const uint8_t *p, size_t len);

/* ---- loop_send.c ---- */
/* Give @c its send if it has anything pending (or finish its drain). */
void loop_try_send(struct loop *l, struct conn *c);
/* After the log grew: every client gets its send, or is judged if its socket is full. */
void loop_flush_clients(struct loop *l);
/* The pack rule (flow.h): count the receivers within its window again (while it holds). */
void loop_count_pack(struct loop *l);
/* The pack rule's periodic check: a holding pack that stopped moving is not waited for. */
void loop_pack_tick(struct loop *l);
/* Wait for @c's socket to have room (POLLOUT). */
void loop_arm_poll(struct loop *l, struct conn *c);
/* The slow policy and a finishing client's end; false when @c is being closed. */
bool loop_judge(struct loop *l, struct conn *c);
/* The one send in flight to @c completed with @res. */
void loop_on_send(struct loop *l, struct conn *c, int res);
/* Stop reading @c (drain, errors). */
void loop_stop_reading(struct loop *l, struct conn *c);
/* Apply the verdicts of the batch, then free the slots whose last completion came. */
void loop_apply_verdicts(struct loop *l);

/* ---- accept.c ---- */
/* Arm the accept of every open listener that has none outstanding. */
void accept_arm(struct loop *l);
/* A completion of listener @index's accept. */
void accept_on_cqe(struct loop *l, uint32_t index, int res, unsigned flags);
/* Cancel every armed accept (they are armed again after the batch, unless draining). */
void accept_cancel(struct loop *l);
/* RLIMIT_NOFILE is @fd_limit now: accepts armed with another one are armed again (lifecycle.c). */
void accept_fd_limit_changed(struct loop *l, rlim_t fd_limit);
void accept_log_rejects(struct loop *l, bool force);
/* --max-clients-per-ip: its table, when the option is on. 0, or -errno with @err set. */
int accept_setup(struct loop *l, char *err, size_t errlen);
/* A proxy listener's client: take its PROXY header from the start of @p[0..@len); returns the
 * bytes taken. Once whole, the header's address stands for the client. */
size_t accept_proxy_gate(struct loop *l, struct conn *c, const uint8_t *p, size_t len);
/* The PROXY header did not come within the deadline. */
void accept_proxy_timeout(struct loop *l, struct conn *c);
/* @c's slot is being freed (loop.c, the one place): it stops counting against its address. */
void accept_forget(struct loop *l, struct conn *c);
rlim_t accept_fd_limit_now(void);

/* ---- listen.c ---- */
/* Open the listeners: @passed_fd (systemd's, or -1: bind --address/--port) as the default one,
 * then --listen's. 0, or -errno with @err set; what was opened is closed by loop_destroy. */
int listen_open_all(struct loop *l, int passed_fd, char *err, size_t errlen);
/* The start lines: "Server started at: ..." for the default one, "Listening at: ..." for others. */
void listen_say_started(const struct loop *l);
/* Stop listening (the drain): cancel the accepts and close every listener. */
void listen_close_all(struct loop *l);
/* Bind and listen on @addr; the metrics endpoint's listener too. 0, or -errno with @err set. */
int listen_socket(const union netaddr *addr, socklen_t alen, int backlog, int *fd_out, char *err,
                  size_t errlen);
/* @c did what its listener does not allow: count it, and close it after the batch. */
void listen_violation(struct loop *l, struct conn *c, enum violation v);
/* Fill @out (LISTENERS_MAX entries) for /metrics; returns how many. */
size_t listen_metrics(const struct loop *l, struct metrics_listener *out);

/* ---- loop_tls.c ---- */
/* TLS listeners: load the context (at start). 0, or -errno with @err set. */
int tls_setup(struct loop *l, char *err, size_t errlen);
void tls_destroy(struct loop *l);
/* False (counted, logged once a second) when @ls is tls and --max-tls-handshakes are running. */
bool tls_accept_allowed(struct loop *l, const struct listener *ls);
/* A new connection on @ls: its TLS state when @ls is tls. 0 or -ENOMEM. */
int tls_conn_open(struct loop *l, struct conn *c, const struct listener *ls);
/* Free @c's TLS state (its slot is being freed). */
void tls_conn_release(struct loop *l, struct conn *c);
/* Ciphertext from @c's socket. */
void tls_on_recv(struct loop *l, struct conn *c, const uint8_t *p, size_t len);
/* loop_try_send for a TLS client: what waits, else the next plan, encrypted. */
void tls_try_send(struct loop *l, struct conn *c);
/* A ciphertext send to @c completed with @res. */
void tls_on_send(struct loop *l, struct conn *c, int res);
/* The handshake was not done in time. */
void tls_timeout(struct loop *l, struct conn *c);
/* SIGHUP: the certificate and key again; a bad pair keeps the old ones. */
void tls_reload(struct loop *l);

/* ---- loop_auth.c ---- */
/* --auth-file: load the tokens (at start). 0, or -errno with @err set. */
int auth_setup(struct loop *l, char *err, size_t errlen);
void auth_destroy(struct loop *l);
/* A new connection on @ls: muted until it authenticates when @ls asks for AUTH. */
void auth_conn_open(struct loop *l, struct conn *c, const struct listener *ls);
/* Take @c's AUTH frame from the start of @p[0..@len); returns the bytes taken. */
size_t auth_gate(struct loop *l, struct conn *c, const uint8_t *p, size_t len);
/* The tick, for a client still at a gate: its deadline, or its delayed close. */
void gate_tick(struct loop *l, struct conn *c);
/* SIGHUP: read the auth file again; revoke the clients whose token went. */
void auth_reload(struct loop *l);
/* Free (and wipe) what @c holds of a split PROXY header or AUTH frame. */
void gate_release(struct conn *c);
/* The bytes a gate looks at (gate_view), and keeping them when it needs more (gate_hold). */
struct gate_view {
    const uint8_t *bytes;
    size_t have;   /* bytes at bytes[] */
    size_t before; /* of them, held from earlier receives */
};
struct gate_view gate_view(struct conn *c, const uint8_t *p, size_t len, size_t cap);
void gate_hold(struct loop *l, struct conn *c, const struct gate_view *v, size_t cap);

/*
 * Which of the bytes @c sent, @p[0..@len), may be ingested: first its AUTH frame goes to the
 * gate (on a listener that asks for it), then its role says whether it may publish. False when
 * nothing is left to ingest; else @p and @len are what remains.
 */
static inline bool listen_admit(struct loop *l, struct conn *c, const uint8_t **p, size_t *len)
{
    if (likely(c->role != ROLE_SUB && c->auth == CONN_AUTH_NONE))
        return true;
    if (c->auth != CONN_AUTH_NONE) {
        size_t used = auth_gate(l, c, *p, *len);
        *p += used;
        *len -= used;
        if (c->auth != CONN_AUTH_NONE || !conn_live(c) || *len == 0)
            return false;
    }
    if (c->role != ROLE_SUB)
        return true;
    listen_violation(l, c, VIOL_SUB_SENT); /* a sub-only client only receives */
    return false;
}

/* ---- lifecycle.c ---- */
void lifecycle_arm(struct loop *l);
void lifecycle_on_signal(struct loop *l, int res);
void lifecycle_on_tick(struct loop *l);
/* Shutting down and all of @c's output is in its socket: FIN, then close once acknowledged. */
void lifecycle_drain_done(struct loop *l, struct conn *c);

#endif
