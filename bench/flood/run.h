/* The state of one flood run, shared by the modules that drive it: the connections (conn.c,
 * sub.c, pub.c), the workers that own them (worker.c), and what the controller (control.c)
 * announces to them and reads back. One header because these structs point at each other; each
 * module's functions are in its own header.
 *
 * Threads: a connection, its buffers and a worker's private fields are touched only by that
 * worker's thread until the workers are joined. What another thread reads is _Atomic, written by
 * one thread with relaxed stores (LD/ST/ADD), except the phase generation, which is published
 * with release and read with acquire so that the phase's parameters are seen with it. */
#ifndef FLOOD_RUN_H
#define FLOOD_RUN_H

#include "cli.h"
#include "hist.h"
#include "msg.h"
#include "seq.h"

#include "ringcast/ring.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define BIG_READ (256 * 1024)          /* byte-counting reads (MSG_TRUNC: never written) */
#define PARSE_BUF (64 * 1024)          /* provided buffers of copying readers: an ordinary read */
#define PUB_BATCH (256 * 1024)         /* bytes of messages per send at full speed */
#define PUB_BATCH_RATE (64 * 1024)     /* at most, per send, at a fixed rate */
#define SLOW_TICK_NS (10 * 1000000ULL) /* slow subscribers read every 10 ms */
#define NS_PER_S 1000000000ULL
#define MAX_ERROR_MSGS 10
#define HIST_HIGHEST (60 * NS_PER_S)

/* The phases of a run, driven by the controller. Each transition bumps ctl.gen; a worker runs
 * the entry actions of the new phase and acknowledges, and the controller looks at the workers'
 * state only once all of them have. PREP_* phases let every worker take its subscribers' byte
 * counts before any publisher of any thread starts the next phase. */
enum phase {
    PH_CONNECT_SUBS,
    PH_CONNECT_PUBS,
    PH_READY,
    PH_PREP_WARMUP,
    PH_WARMUP,
    PH_WARM_DRAIN,
    PH_PREP_MEASURE,
    PH_MEASURE,
    PH_DRAIN,
    PH_HOLD,
    PH_GRACE,
    PH_DONE
};

enum role { ROLE_SUB, ROLE_PUB, ROLE_SLOW, ROLE_CHURN };
enum cstate { CS_IDLE, CS_CONNECTING, CS_SUBSCRIBING, CS_OPEN, CS_DEAD };

/* What a completion is for: the low bits of its user_data (the rest is the connection). */
enum op {
    OP_CONNECT = 1,
    OP_RECV_P = 2, /* multishot recv, copying into the parse buffer group */
    OP_RECV_T = 3, /* multishot recv, MSG_TRUNC (byte counting), the big buffer group */
    OP_SEND = 4,
    OP_LAZY = 5,   /* one-shot MSG_DONTWAIT recv of a lazy or slow subscriber */
    OP_WAKE = 6,   /* the worker's eventfd */
    OP_IGNORE = 7, /* cancels, PONGs */
};
#define OP_MASK 7u

/* Relaxed atomics for what one thread writes and another reads (counters, states): plain moves
 * on x86, and race-free for the sanitizers. */
#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)
#define ADD(x, v) ST(x, LD(x) + (v))

struct addrinfo;
struct worker;
struct flood;
struct tls_client;
struct tls_session;

struct pubstate {
    char *out;
    size_t out_len, out_off;
    bool out_ctl;                   /* the pending bytes are a control line, not messages */
    bool inflight;                  /* a send is in flight */
    bool pong_due;                  /* nats: answer a PING once the current send is complete */
    uint64_t w_seq, m_seq;          /* next sequence numbers */
    uint64_t phase_msgs;            /* messages generated in the current phase */
    uint64_t sched_start;           /* fixed rate: intended time of message 0 of the phase */
    bool gen_done;                  /* generated everything for the current phase */
    bool checked_reply;             /* redis: first reply looked at */
    _Atomic uint64_t phase_written; /* message bytes written in the current phase */
    _Atomic bool done;              /* gen_done and nothing pending */
    _Atomic uint64_t ready_sent;    /* publisher 0: readiness messages sent */
};

struct conn {
    int fd;
    uint8_t role;
    _Atomic uint8_t state;
    bool verify; /* checks every message during the measurement */
    bool parse;  /* parses what it receives (verified, or during setup) */
    bool lazy;   /* --read-interval: read on a timer while the load runs */
    bool recv_armed, recv_trunc, lazy_inflight;
    bool recv_msg; /* the armed recv is a recvmsg (verified: kernel receive timestamps) */
    bool skim;     /* nats byte counting: walks message boundaries to find the server's PINGs */
    uint32_t idx;
    struct worker *w;
    _Atomic uint64_t rx; /* message bytes received (control lines excluded) */
    uint64_t base;       /* rx at the start of the current phase */
    char *carry;         /* parse mode: the incomplete tail of the last read */
    uint32_t carry_len, carry_cap;
    uint64_t skip; /* skim: bytes left of the current message */
    char tok[8];   /* skim: a control line cut by the end of a read */
    uint32_t tok_len;
    _Atomic uint64_t ready_seq; /* 1 + the newest readiness sequence number seen from pub 0 */
    uint64_t m_valid;           /* intact measured messages */
    uint64_t rx_kts;            /* verified: kernel receive time of the current read (flood's
                                 * CLOCK_MONOTONIC ns, see sub_unpack), 0 when it carried none */
    uint64_t corrupt;           /* corrupt messages during the measurement */
    struct seqtrack *tracks;    /* verified: one per publisher */
    _Atomic uint64_t *nexts;    /* verified: tracks[p].next, for the controller */
    struct pubstate *pub;
    struct tls_session *tls; /* --tls: the session (tls.c), from the TCP connect on */
    /* slow subscribers */
    uint64_t slow_allowed_at; /* next read not before this */
    bool slow_closed;         /* the relay closed it */
};

struct worker {
    struct flood *run;
    const struct flood_opts *o;
    int id;
    pthread_t thread;
    struct io_uring ring;
    struct ring_features feat;
    struct ring_bufs pbufs, tbufs;
    struct conn **subs, **pubs, **slows, **churns;
    long nsubs, npubs, nslows, nchurns;
    long nlazy;
    int efd;
    uint64_t efd_val;
    char *scratch; /* carry + one buffer, for parsing across reads */
    size_t scratch_cap;
    char *trash; /* MSG_TRUNC target of lazy reads (never written) */
    unsigned gen;
    enum phase phase;
    uint64_t phase_start, phase_end;
    uint64_t ready_done; /* readiness rounds handled */
    long next_sub, next_pub, connecting, opened;
    uint64_t connect_start;
    uint64_t next_lazy;
    long lazy_cursor; /* where the current round of lazy reads stands (0: none under way) */
    uint64_t next_snap;
    uint64_t next_churn;
    uint64_t churn_ops_local;
    struct hist lat;
    pthread_mutex_t snap_mu;
    struct hist snap; /* a copy of lat every 0.5 s, under snap_mu, for the progress line */
    struct hist drv;  /* driver overhead: kernel receive timestamp to the recorded arrival */
    struct hist plag; /* fixed rate: publisher lateness, intended send time to the send */
    int64_t rt_off;   /* CLOCK_REALTIME - CLOCK_MONOTONIC in ns, re-sampled every 0.5 s */
    /* the recvmsg template of verified subscribers: room for the control messages only */
    struct msghdr rx_msg;
    /* --spin-us: polling instead of sleeping (worker.c, worker_wait_spin) */
    uint64_t spin_check_at, spin_off_until; /* see spin_allowed */
    uint64_t spin_waited;                   /* run-queue wait at the last check, ns */
    int schedstat_fd;                       /* /proc/thread-self/schedstat, -1: none */
    /* read by the controller */
    _Atomic unsigned acked;
    _Atomic long connected, subs_open, live;
    _Atomic uint64_t rx_total, sub_reads, lost_sofar, churn_ops, churn_fail;
    _Atomic uint64_t spin_ns; /* measured phase and drain: time spent polling the ring */
};

/* What the controller announces to the workers. */
struct ctl {
    _Atomic unsigned gen; /* bumped (release) after the fields below are set */
    _Atomic int phase;
    _Atomic uint64_t phase_start, phase_end;
    _Atomic uint64_t ready_round;
};

/* Runtime errors: counted, printed, and the first MAX_ERROR_MSGS kept for the JSON. */
struct errlog {
    pthread_mutex_t mu;
    _Atomic uint64_t count;
    char *msgs[MAX_ERROR_MSGS];
    int n;
};

struct flood {
    const struct flood_opts *o;
    const volatile sig_atomic_t *stop; /* set by SIGINT / SIGTERM */
    const struct addrinfo *ai;         /* the relay's address (the caller's) */
    struct msgfmt fmt;
    struct tls_client *tls; /* --tls: the client context (tls.c); NULL without */
    struct conn *conns;     /* subs first, then pubs, then slow subscribers, then churn slots */
    long nconns, nslow, nchurn;
    struct worker *workers;
    long nworkers;
    uint64_t epoch; /* timestamps in messages are relative to this */
    struct ctl ctl;
    struct errlog errs;
    _Atomic uint64_t setup_corrupt; /* corrupt readiness / warm-up messages */
    struct hist lat;                /* every worker's, merged at the end (report_compute) */
    struct hist drv, plag;          /* the same for driver overhead and publisher lateness */
};

/** CLOCK_MONOTONIC in ns. */
uint64_t now_ns(void);

/** ns from @since to @now, 0 when @since is later: another thread may have stamped @since after
 * this one read its clock, and an unsigned difference would wrap to 584 years. */
static inline uint64_t ns_since(uint64_t now, uint64_t since)
{
    return now > since ? now - since : 0;
}

/** Exits 1 with "flood: MESSAGE"; from any thread (the first one to get stderr wins, the others
 * block there until the process is gone). */
void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...);

/** A runtime error: counted, printed, kept for the JSON; the run goes on. Any thread. */
void __attribute__((format(printf, 2, 3))) run_error(struct flood *run, const char *fmt, ...);

/** The phase the controller announced last (any thread). */
static inline enum phase run_phase(const struct flood *run)
{
    return (enum phase)atomic_load_explicit(&run->ctl.phase, memory_order_relaxed);
}

/** True before the load starts: a failure then is a set-up failure (exit 1). */
static inline bool run_in_setup(const struct flood *run)
{
    return run_phase(run) <= PH_READY;
}

/** "connect", "warm-up", "measure", ...: the phase as the progress line names it. */
const char *phase_name(enum phase ph);

/** "subscriber 3", "publisher 0", ...: into @buf. */
const char *conn_name(const struct conn *c, char *buf, size_t len);

/** A rate for people: "63.69M", "12.3k", "950". */
void run_fmt_rate(char *buf, size_t len, double v);

/** Publisher @i (0 to pubs - 1). */
static inline struct conn *run_pub(const struct flood *run, long i)
{
    return &run->conns[run->o->subs + i];
}

#endif
