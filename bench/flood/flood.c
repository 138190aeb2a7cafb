/* flood: the load driver for ringcast (and, for comparison, Redis pub/sub and NATS).
 *
 * T worker threads (--threads), each with its own io_uring (set up by the project's ring code,
 * src/ring.c) and its share of the connections; the main thread is the controller, which runs
 * the phases from the workers' counters and wakes them through an eventfd each reads through its
 * ring. Nothing mutable is shared on the hot path: a worker's connections, buffers and histogram
 * are its own, and what the controller reads (byte counts, states) is written by one thread with
 * relaxed atomic stores. A run goes through these phases:
 *   connect   open every subscriber (Redis: SUBSCRIBE and wait for the confirmation; NATS:
 *             CONNECT, SUB and a PING answered by PONG), then every publisher, at most
 *             --connect-rate per second, with IORING_OP_CONNECT;
 *   ready     publisher 0 sends readiness messages, one every 100 ms, until every subscriber has
 *             received the latest one (so every subscriber is registered by the relay, and since
 *             a relay keeps each sender's order, nothing older is still in flight);
 *   warm-up   the real load for --warmup seconds, with messages marked 'W', then a drain until
 *             every subscriber has everything (so no warm-up byte is counted later);
 *   measure   the real load with messages marked 'M' for --duration seconds or --count messages
 *             per publisher, then a drain until every subscriber has everything or nothing moved
 *             for --drain-timeout seconds. The measured window runs from the start of this phase
 *             to the end of its drain; both CPU figures cover exactly that window.
 * Subscribers receive with multishot recv and provided buffers. Verified subscribers (--verify)
 * parse every message and check each publisher's sequence and the content; the others count
 * bytes: their recv uses MSG_TRUNC, so the kernel discards the data without copying and the
 * completion's byte count is all there is (NATS: the stream is walked from message boundary to
 * boundary, to answer the server's PINGs). Their deliveries are derived from the byte count, a
 * whole number of fixed-size messages. With --read-interval they have no recv armed while the
 * load runs but get a one-shot MSG_DONTWAIT recv every interval, so flood makes far fewer reads
 * (each of which costs a TCP ACK) than the relay makes sends.
 * Publishers have one send in flight each: at full speed a 256 KiB batch, at a fixed rate the
 * messages due, the loop waiting for the next one with the ring's wait timeout.
 * Latency is measured on verified subscribers only: at a fixed --rate from each message's intended
 * send time (no coordinated omission), at full speed from the moment its batch was generated,
 * just before the send.
 * See bench/README.md for the options and the JSON it prints. */
#include "hist.h"
#include "msg.h"
#include "seq.h"

#include "ringcast/ring.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOOD_VERSION "0.1.0"

#define BIG_READ (256 * 1024)          /* byte-counting reads (MSG_TRUNC: never written) */
#define PARSE_BUF (64 * 1024)          /* provided buffers of copying readers: an ordinary read */
#define PUB_BATCH (256 * 1024)         /* bytes of messages per send at full speed */
#define PUB_BATCH_RATE (64 * 1024)     /* at most, per send, at a fixed rate */
#define CONNECT_WINDOW 256             /* connects in progress at most */
#define SLOW_TICK_NS (10 * 1000000ULL) /* slow subscribers read every 10 ms */
#define CONTROL_TICK_NS (1000000ULL)   /* the controller looks at the workers this often */
#define NS_PER_S 1000000000ULL
#define READY_ROUND_NS (100 * 1000000ULL)
#define READY_TIMEOUT_NS (10 * NS_PER_S)
#define CONNECT_TIMEOUT_NS (10 * NS_PER_S)
#define MAX_WAIT_NS (50 * 1000000ULL) /* the loop looks at its deadlines at least this often */
#define MAX_ERROR_MSGS 10
#define HIST_HIGHEST (60 * NS_PER_S)
#define GRACE_NS (100 * 1000000ULL) /* after the window, still count what arrives this long */

/* ---------------------------------------------------------------------------------------- */
/* Options */

struct opts {
    enum proto proto;
    const char *host;
    int port;
    long subs, pubs;
    size_t size;
    double rate;
    double duration;
    bool count_mode;
    uint64_t count;
    double warmup;
    long verify; /* -1: all */
    double connect_rate;
    const char *json;
    long server_pid; /* 0: none */
    bool expect_lossless;
    bool copy_reads;
    double drain_timeout;
    size_t rcvlowat;
    size_t rcvbuf;
    double read_interval_us;
    long threads;
    const char *channel;
    long slow_subs;
    double slow_rate;
    double churn;
    long repeat;
    const char *hist;
};

static struct opts O = {
    .proto = PROTO_LINE,
    .host = "127.0.0.1",
    .port = -1,
    .subs = 10,
    .pubs = 1,
    .size = 64,
    .rate = 0,
    .duration = 10,
    .warmup = 1,
    .verify = -1,
    .drain_timeout = 5,
    .rcvlowat = 0,
    .threads = 1,
    .channel = "flood",
    .slow_rate = 1024,
    .repeat = 1,
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: flood [options]\n"
            "Drives publishers and subscribers at a broadcast relay and reports throughput,\n"
            "latency and whether anything was lost, duplicated, reordered or corrupted.\n"
            "\n"
            "  --proto line|len32|redis|nats  wire protocol (ringcast framings, Redis or NATS)\n"
            "  --host ADDR               relay address (default 127.0.0.1)\n"
            "  --port N                  relay port (default 5000; 6379 redis, 4222 nats)\n"
            "  --subs N                  subscriber connections (default 10)\n"
            "  --pubs P                  publisher connections (default 1; 0 = idle connections\n"
            "                            only, held for --duration)\n"
            "  --size S                  payload bytes per message (default 64; line: includes\n"
            "                            the '\\n'; len32: excludes the 4-byte header; K/M ok)\n"
            "  --rate R                  messages/s per publisher, 0 = as fast as back-pressure\n"
            "                            allows (default 0)\n"
            "  --duration D              measured seconds (default 10)\n"
            "  --count M                 messages per publisher instead of a duration\n"
            "  --warmup W                seconds of load before measuring (default 1)\n"
            "  --verify K                subscribers that check every message (default: all);\n"
            "                            the others only count bytes\n"
            "  --connect-rate C          connections opened per second (default 0: no limit,\n"
            "                            at most %d handshakes at once)\n"
            "  --json FILE               write the JSON result there instead of stdout\n"
            "  --server-pid PID          report that process's CPU, RSS and descriptors\n"
            "  --expect-lossless         exit 3 if anything was lost, duplicated, reordered or\n"
            "                            corrupted\n"
            "  --copy-reads              byte-counting subscribers copy data out instead of\n"
            "                            letting the kernel discard it (MSG_TRUNC)\n"
            "  --drain-timeout S         give up on missing deliveries after S seconds without\n"
            "                            progress (default 5)\n"
            "  --rcvlowat B              byte-counting subscribers wake up only once B bytes\n"
            "                            are waiting while the load runs (SO_RCVLOWAT; default\n"
            "                            0 = off): fewer, larger reads\n"
            "  --read-interval US        while the load runs, byte-counting subscribers are not\n"
            "                            watched but read every US microseconds (default 0:\n"
            "                            watched and read at once), so that they make far\n"
            "                            fewer reads than the relay makes sends\n"
            "  --rcvbuf B                SO_RCVBUF of subscribers (default: the system's)\n"
            "  --channel NAME            redis channel / nats subject (default flood)\n"
            "  --threads T               event loops, one io_uring each, connections spread\n"
            "                            over them (default 1)\n"
            "  --slow-subs K             K more subscribers that read at most --slow-rate\n"
            "                            bytes/s, reported on their own (default 0)\n"
            "  --slow-rate B             bytes/s a slow subscriber reads (default 1K)\n"
            "  --churn C                 connects/disconnects per second of extra clients\n"
            "                            during the measurement (default 0)\n"
            "  --repeat N                run the workload N times; report the medians and the\n"
            "                            spread (default 1)\n"
            "  --hist FILE               write the latency percentile distribution there\n"
            "                            (HdrHistogram text format, microseconds)\n"
            "  --help, --version\n"
            "Exit status: 0 done, 1 could not set up, 2 bad arguments, 3 not lossless with\n"
            "--expect-lossless.\n",
            CONNECT_WINDOW);
}

static void __attribute__((noreturn, format(printf, 1, 2))) bad_args(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("flood: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    exit(2);
}

static pthread_mutex_t die_mu = PTHREAD_MUTEX_INITIALIZER;

/* Exits 1 with a message; from any thread (the first one to die wins, the others wait). */
static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
    pthread_mutex_lock(&die_mu);
    va_list ap;
    va_start(ap, fmt);
    fputs("flood: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static long parse_long(const char *name, const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        bad_args("%s: expected an integer from %ld to %ld, got '%s'", name, min, max, s);
    return (long)v;
}

static double parse_double(const char *name, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        bad_args("%s: expected a number from %g to %g, got '%s'", name, min, max, s);
    return v;
}

static size_t parse_size(const char *name, const char *s, size_t min, size_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        bad_args("%s: expected a byte count, got '%s'", name, s);
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024 * 1024, end++;
    if (*end)
        bad_args("%s: expected a byte count (K and M suffixes allowed), got '%s'", name, s);
    if (v > max / mul || v * mul < min || v * mul > max)
        bad_args("%s: expected %zu to %zu bytes, got '%s'", name, min, max, s);
    return (size_t)(v * mul);
}

enum {
    OPT_PROTO = 256,
    OPT_HOST,
    OPT_PORT,
    OPT_SUBS,
    OPT_PUBS,
    OPT_SIZE,
    OPT_RATE,
    OPT_DURATION,
    OPT_COUNT,
    OPT_WARMUP,
    OPT_VERIFY,
    OPT_CONNECT_RATE,
    OPT_JSON,
    OPT_SERVER_PID,
    OPT_EXPECT_LOSSLESS,
    OPT_COPY_READS,
    OPT_DRAIN_TIMEOUT,
    OPT_RCVLOWAT,
    OPT_RCVBUF,
    OPT_READ_INTERVAL,
    OPT_CHANNEL,
    OPT_THREADS,
    OPT_SLOW_SUBS,
    OPT_SLOW_RATE,
    OPT_CHURN,
    OPT_REPEAT,
    OPT_HIST,
    OPT_HELP,
    OPT_VERSION,
};

static void parse_opts(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"proto", required_argument, NULL, OPT_PROTO},
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"subs", required_argument, NULL, OPT_SUBS},
        {"pubs", required_argument, NULL, OPT_PUBS},
        {"size", required_argument, NULL, OPT_SIZE},
        {"rate", required_argument, NULL, OPT_RATE},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"count", required_argument, NULL, OPT_COUNT},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"verify", required_argument, NULL, OPT_VERIFY},
        {"connect-rate", required_argument, NULL, OPT_CONNECT_RATE},
        {"json", required_argument, NULL, OPT_JSON},
        {"server-pid", required_argument, NULL, OPT_SERVER_PID},
        {"expect-lossless", no_argument, NULL, OPT_EXPECT_LOSSLESS},
        {"copy-reads", no_argument, NULL, OPT_COPY_READS},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
        {"rcvlowat", required_argument, NULL, OPT_RCVLOWAT},
        {"rcvbuf", required_argument, NULL, OPT_RCVBUF},
        {"read-interval", required_argument, NULL, OPT_READ_INTERVAL},
        {"channel", required_argument, NULL, OPT_CHANNEL},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"slow-subs", required_argument, NULL, OPT_SLOW_SUBS},
        {"slow-rate", required_argument, NULL, OPT_SLOW_RATE},
        {"churn", required_argument, NULL, OPT_CHURN},
        {"repeat", required_argument, NULL, OPT_REPEAT},
        {"hist", required_argument, NULL, OPT_HIST},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    bool have_duration = false, have_size = false;
    opterr = 0;
    for (;;) {
        int ch = getopt_long(argc, argv, ":h", longopts, NULL);
        if (ch == -1)
            break;
        switch (ch) {
        case OPT_PROTO:
            if (!strcmp(optarg, "line"))
                O.proto = PROTO_LINE;
            else if (!strcmp(optarg, "len32"))
                O.proto = PROTO_LEN32;
            else if (!strcmp(optarg, "redis"))
                O.proto = PROTO_REDIS;
            else if (!strcmp(optarg, "nats"))
                O.proto = PROTO_NATS;
            else
                bad_args("--proto: unknown protocol '%s' (line, len32, redis, nats)", optarg);
            break;
        case OPT_HOST:
            if (!*optarg)
                bad_args("--host: empty address");
            O.host = optarg;
            break;
        case OPT_PORT:
            O.port = (int)parse_long("--port", optarg, 1, 65535);
            break;
        case OPT_SUBS:
            O.subs = parse_long("--subs", optarg, 0, 1000000);
            break;
        case OPT_PUBS:
            O.pubs = parse_long("--pubs", optarg, 0, MSG_MAX_PUBS);
            break;
        case OPT_SIZE:
            O.size = parse_size("--size", optarg, 1, MSG_MAX_SIZE);
            have_size = true;
            break;
        case OPT_RATE:
            O.rate = parse_double("--rate", optarg, 0, 1e9);
            break;
        case OPT_DURATION:
            O.duration = parse_double("--duration", optarg, 0.001, 1e6);
            have_duration = true;
            break;
        case OPT_COUNT:
            O.count = (uint64_t)parse_long("--count", optarg, 1, (long)(MSG_MAX_SEQ - 1));
            O.count_mode = true;
            break;
        case OPT_WARMUP:
            O.warmup = parse_double("--warmup", optarg, 0, 1e6);
            break;
        case OPT_VERIFY:
            O.verify = parse_long("--verify", optarg, 0, 1000000);
            break;
        case OPT_CONNECT_RATE:
            O.connect_rate = parse_double("--connect-rate", optarg, 0, 1e9);
            break;
        case OPT_JSON:
            O.json = optarg;
            break;
        case OPT_SERVER_PID:
            O.server_pid = parse_long("--server-pid", optarg, 1, INT_MAX);
            break;
        case OPT_EXPECT_LOSSLESS:
            O.expect_lossless = true;
            break;
        case OPT_COPY_READS:
            O.copy_reads = true;
            break;
        case OPT_DRAIN_TIMEOUT:
            O.drain_timeout = parse_double("--drain-timeout", optarg, 0.01, 1e6);
            break;
        case OPT_RCVLOWAT:
            O.rcvlowat = parse_size("--rcvlowat", optarg, 0, 64u << 20);
            break;
        case OPT_RCVBUF:
            O.rcvbuf = parse_size("--rcvbuf", optarg, 0, 1u << 30);
            break;
        case OPT_READ_INTERVAL:
            O.read_interval_us = parse_double("--read-interval", optarg, 0, 1e6);
            break;
        case OPT_CHANNEL:
            if (!*optarg || strlen(optarg) > MSG_MAX_CHANNEL || strpbrk(optarg, " \t\r\n"))
                bad_args("--channel: expected 1 to %d bytes", MSG_MAX_CHANNEL);
            O.channel = optarg;
            break;
        case OPT_THREADS:
            O.threads = parse_long("--threads", optarg, 1, 256);
            break;
        case OPT_SLOW_SUBS:
            O.slow_subs = parse_long("--slow-subs", optarg, 0, 100000);
            break;
        case OPT_SLOW_RATE:
            O.slow_rate = (double)parse_size("--slow-rate", optarg, 1, 1u << 30);
            break;
        case OPT_CHURN:
            O.churn = parse_double("--churn", optarg, 0, 100000);
            break;
        case OPT_REPEAT:
            O.repeat = parse_long("--repeat", optarg, 1, 1000);
            break;
        case OPT_HIST:
            O.hist = optarg;
            break;
        case 'h':
        case OPT_HELP:
            usage(stdout);
            exit(0);
        case OPT_VERSION:
            printf("flood %s\n", FLOOD_VERSION);
            exit(0);
        case ':':
            bad_args("%s: missing value", argv[optind - 1]);
        default:
            if (optopt)
                bad_args("unknown option '-%c'", optopt);
            bad_args("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        bad_args("unexpected argument '%s'", argv[optind]);
    if (O.count_mode && have_duration)
        bad_args("--duration and --count exclude each other");
    if (O.port < 0)
        O.port = O.proto == PROTO_REDIS ? 6379 : O.proto == PROTO_NATS ? 4222 : 5000;
    size_t min = msg_min_size(O.proto);
    if (O.size < min)
        bad_args("--size: at least %zu bytes for --proto %s (the message header), got %zu%s", min,
                 proto_name(O.proto), O.size, have_size ? "" : " by default");
    if (O.verify < 0 || O.verify > O.subs)
        O.verify = O.subs;
    if (O.pubs == 0 && O.count_mode)
        bad_args("--count needs at least one publisher");
}

/* ---------------------------------------------------------------------------------------- */
/* State */

/* The phases of a run, driven by the controller (the main thread). Each transition bumps
 * CTL.gen; a worker runs the entry actions of the new phase and acknowledges, and the controller
 * looks at the workers' state only once all of them have. PREP_* phases let every worker take its
 * subscribers' byte counts before any publisher of any thread starts the next phase. */
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
static const char *const phase_names[] = {"connect", "connect", "ready",   "warm-up",
                                          "warm-up", "warm-up", "measure", "measure",
                                          "drain",   "hold",    "grace",   "done"};

enum role { ROLE_SUB, ROLE_PUB, ROLE_SLOW, ROLE_CHURN };
enum cstate { CS_IDLE, CS_CONNECTING, CS_SUBSCRIBING, CS_OPEN, CS_DEAD };

/* What a completion is for: the low bits of its user_data (the rest is the connection). */
enum op {
    OP_CONNECT = 1,
    OP_RECV_P = 2, /* multishot recv, copying into the parse buffer group */
    OP_RECV_T = 3, /* multishot recv, MSG_TRUNC (byte counting), the big buffer group */
    OP_SEND = 4,
    OP_LAZY = 5,   /* one-shot MSG_DONTWAIT|MSG_TRUNC recv of a lazy subscriber */
    OP_WAKE = 6,   /* the worker's eventfd */
    OP_IGNORE = 7, /* cancels, PONGs */
};
#define OP_MASK 7u

/* Relaxed atomics for what one thread writes and another reads (counters, states): plain moves
 * on x86, and race-free for the sanitizers. */
#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define ST(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)
#define ADD(x, v) ST(x, LD(x) + (v))

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

struct worker;

struct conn {
    int fd;
    uint8_t role;
    _Atomic uint8_t state;
    bool verify; /* checks every message during the measurement */
    bool parse;  /* parses what it receives (verified, or during setup) */
    bool lazy;   /* --read-interval: read on a timer while the load runs */
    bool recv_armed, recv_trunc, lazy_inflight;
    bool skim; /* nats byte counting: walks message boundaries to find the server's PINGs */
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
    uint64_t corrupt;           /* corrupt messages during the measurement */
    struct seqtrack *tracks;    /* verified: one per publisher */
    _Atomic uint64_t *nexts;    /* verified: tracks[p].next, for the controller */
    struct pubstate *pub;
    /* slow subscribers */
    uint64_t slow_allowed_at; /* next read not before this */
    bool slow_closed;         /* the relay closed it */
    uint64_t churn_at;        /* churn: when this slot connects / disconnects next */
};

struct worker {
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
    long lazy_cursor;
    uint64_t next_snap;
    uint64_t next_churn;
    uint64_t churn_ops_local;
    struct hist lat;
    pthread_mutex_t snap_mu;
    struct hist snap;
    /* read by the controller */
    _Atomic unsigned acked;
    _Atomic long connected, subs_open, live;
    _Atomic uint64_t rx_total, sub_reads, lost_sofar, churn_ops, churn_fail;
    _Atomic bool failed_setup;
};

static struct {
    _Atomic unsigned gen;
    _Atomic int phase;
    _Atomic uint64_t phase_start, phase_end;
    _Atomic uint64_t ready_round;
    volatile sig_atomic_t stop;
} CTL;

struct cpu_snap {
    uint64_t wall_ns;
    double self_s;
    double server_s; /* < 0: unknown */
    double softirqd_s;
};

static struct {
    struct msgfmt fmt;
    struct conn *conns; /* subs first, then pubs, then slow subscribers, then churn slots */
    long nconns, nslow, nchurn;
    struct worker *workers;
    long nworkers;
    struct addrinfo *ai;
    uint64_t epoch; /* timestamps in messages are relative to this */
    uint64_t phase_start, phase_end;
    uint64_t connect_progress_at, ready_round_at;
    long connect_seen;
    uint64_t drain_seen_rx, drain_seen_tx, drain_progress_at;
    uint64_t warm_published;
    uint64_t setup_corrupt_m; /* under err_mu */
    pthread_mutex_t err_mu;
    _Atomic uint64_t errors;
    char *error_msgs[MAX_ERROR_MSGS];
    int nerror_msgs;
    struct hist lat; /* merged at the end */
    /* measured window */
    struct cpu_snap cpu0, cpu1;
    double others0, others1;
    uint64_t others0_at, others1_at;
    uint64_t t_end;
    long server_rss_start, server_rss_end, server_fds_start, server_fds_end;
    /* progress */
    uint64_t next_progress, last_progress_rx, last_progress_at;
    struct hist prog_hist;
} F;

static _Atomic uint64_t setup_corrupt;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void __attribute__((format(printf, 1, 2))) runtime_error(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&F.err_mu);
    ADD(F.errors, 1);
    fprintf(stderr, "flood: %s\n", buf);
    if (F.nerror_msgs < MAX_ERROR_MSGS)
        F.error_msgs[F.nerror_msgs++] = strdup(buf);
    pthread_mutex_unlock(&F.err_mu);
}

static const char *conn_name(const struct conn *c, char *buf, size_t len)
{
    static const char *const names[] = {"subscriber", "publisher", "slow subscriber",
                                        "churn client"};
    snprintf(buf, len, "%s %u", names[c->role], c->idx);
    return buf;
}

static enum phase ctl_phase(void)
{
    return (enum phase)LD(CTL.phase);
}

static bool in_setup(void)
{
    enum phase p = ctl_phase();
    return p <= PH_READY;
}

/* ---------------------------------------------------------------------------------------- */
/* /proc and rusage */

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of a process (all its threads), in seconds; -1 when unknown. */
static double pid_cpu_s(long pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* Fields after the command: state is field 3, utime 14, stime 15. */
    unsigned long long utime = 0, stime = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14)
            utime = strtoull(tok, NULL, 10);
        if (field == 15) {
            stime = strtoull(tok, NULL, 10);
            break;
        }
    }
    if (field != 15)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double server_cpu_s(void)
{
    return O.server_pid ? pid_cpu_s(O.server_pid) : -1;
}

/* The kernel's softirq threads: network work that the kernel deferred to them is nobody's
 * process time, so it is reported on its own. */
#define MAX_SOFTIRQD 64
static long softirqd_pids[MAX_SOFTIRQD];
static int nsoftirqd;

static void find_softirqd(void)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && nsoftirqd < MAX_SOFTIRQD) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64], comm[64] = "";
        snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof(comm), f) && !strncmp(comm, "ksoftirqd/", 10))
            softirqd_pids[nsoftirqd++] = pid;
        fclose(f);
    }
    closedir(d);
}

static double softirqd_cpu_s(void)
{
    double total = 0;
    for (int i = 0; i < nsoftirqd; i++) {
        double v = pid_cpu_s(softirqd_pids[i]);
        if (v > 0)
            total += v;
    }
    return total;
}

static long server_rss_kb(void)
{
    if (!O.server_pid)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", O.server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static long server_fds(void)
{
    if (!O.server_pid)
        return -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", O.server_pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* CPU time of every process but flood, the server and the softirq threads: utime + stime, plus
 * cutime + cstime so that children that came and went meanwhile count too (through their parent).
 * Other work on the machine skews the figures; this says how much there was. */
static double others_cpu_s(void)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    double ticks = 0;
    long self = (long)getpid();
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self || pid == O.server_pid)
            continue;
        bool skip = false;
        for (int i = 0; i < nsoftirqd; i++)
            skip |= softirqd_pids[i] == pid;
        if (skip)
            continue;
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        if (!p)
            continue;
        unsigned long long v[4] = {0};
        /* After the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt
         * cmajflt utime stime cutime cstime */
        if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &v[0],
                   &v[1], &v[2], &v[3]) == 4)
            ticks += (double)(v[0] + v[1] + v[2] + v[3]);
    }
    closedir(d);
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

static void cpu_snapshot(struct cpu_snap *s, uint64_t now)
{
    s->wall_ns = now;
    s->self_s = self_cpu_s();
    s->server_s = server_cpu_s();
    s->softirqd_s = softirqd_cpu_s();
}

/* ---------------------------------------------------------------------------------------- */
/* Connections (each owned by one worker, touched only by its thread until the end) */

static inline uint64_t ud(const struct conn *c, enum op op)
{
    return (uint64_t)(uintptr_t)c | (uint64_t)op;
}

static void conn_set_state(struct conn *c, enum cstate s)
{
    enum cstate old = (enum cstate)LD(c->state);
    bool was_live = old == CS_OPEN || old == CS_SUBSCRIBING;
    bool live = s == CS_OPEN || s == CS_SUBSCRIBING;
    if (was_live != live)
        ADD(c->w->live, live ? 1 : -1);
    ST(c->state, (uint8_t)s);
}

static void conn_kill(struct conn *c)
{
    if (c->fd >= 0) {
        /* Ends the requests still in flight on it (they hold the file open). */
        shutdown(c->fd, SHUT_RDWR);
        close(c->fd);
        c->fd = -1;
    }
    if (LD(c->state) == CS_CONNECTING)
        c->w->connecting--;
    conn_set_state(c, CS_DEAD);
    if (c->pub) {
        c->pub->gen_done = true;
        c->pub->out_len = c->pub->out_off = 0;
        ST(c->pub->done, true);
    }
}

/* A connection failed. Before the load starts that is a set-up failure; afterwards it is
 * counted and the run goes on. */
static void conn_failed(struct conn *c, const char *why)
{
    char name[64];
    conn_name(c, name, sizeof(name));
    if (c->role == ROLE_SLOW && !in_setup()) {
        c->slow_closed = true;
        conn_kill(c);
        return;
    }
    if (in_setup())
        die("%s: %s during set-up", name, why);
    runtime_error("%s: %s (%s)", name, why, phase_names[ctl_phase()]);
    conn_kill(c);
}

static void conn_failed_res(struct conn *c, int res)
{
    if (res == 0)
        conn_failed(c, "connection closed by the server");
    else
        conn_failed(c, strerror(-res));
}

static void send_all(struct conn *c, const char *buf, size_t len, const char *what)
{
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n != (ssize_t)len) {
        char name[64];
        die("%s: cannot send %s: %s", conn_name(c, name, sizeof(name)), what,
            n < 0 ? strerror(errno) : "short write");
    }
}

/* Arms the multishot recv of a connection in the mode it is in now: copying into the parse
 * buffers when it parses (or is a publisher of a protocol with replies to look at), MSG_TRUNC
 * into the big group otherwise. */
static void recv_arm(struct conn *c)
{
    struct worker *w = c->w;
    bool trunc;
    if (c->role == ROLE_PUB)
        trunc = O.proto == PROTO_LINE || O.proto == PROTO_LEN32;
    else
        trunc = !c->parse && !c->skim && !O.copy_reads;
    struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);
    io_uring_prep_recv(sqe, c->fd, NULL, 0, trunc ? MSG_TRUNC : 0);
    sqe->ioprio |= IORING_RECV_MULTISHOT;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = trunc ? w->tbufs.bgid : w->pbufs.bgid;
    io_uring_sqe_set_data64(sqe, ud(c, trunc ? OP_RECV_T : OP_RECV_P));
    c->recv_armed = true;
    c->recv_trunc = trunc;
}

static void recv_cancel(struct conn *c)
{
    struct io_uring_sqe *sqe = ring_get_sqe(&c->w->ring);
    io_uring_prep_cancel64(sqe, ud(c, c->recv_trunc ? OP_RECV_T : OP_RECV_P), 0);
    io_uring_sqe_set_data64(sqe, OP_IGNORE);
}

/* Whether the subscriber should have a multishot recv armed now. */
static bool sub_wants_recv(const struct conn *c)
{
    if (c->role == ROLE_SLOW)
        return false;
    return !(c->lazy && !c->parse);
}

/* After a mode change: the armed recv is cancelled (its last completion re-arms it in the new
 * mode, see on_recv) when it no longer fits. */
static void recv_refresh(struct conn *c)
{
    if (c->fd < 0 || LD(c->state) == CS_DEAD || !c->recv_armed)
        return;
    bool trunc = !c->parse && !c->skim && !O.copy_reads;
    if (!sub_wants_recv(c) || trunc != c->recv_trunc)
        recv_cancel(c);
}

static void on_connected(struct conn *c, uint64_t now)
{
    struct worker *w = c->w;
    w->connecting--;
    ADD(w->connected, 1);
    (void)now;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->role == ROLE_PUB) {
        conn_set_state(c, CS_OPEN);
        if (O.proto == PROTO_NATS)
            send_all(c, F.fmt.hello, F.fmt.hello_len, "CONNECT");
        recv_arm(c);
        return;
    }
    if (O.proto == PROTO_REDIS || O.proto == PROTO_NATS) {
        send_all(c, F.fmt.subscribe, F.fmt.subscribe_len,
                 O.proto == PROTO_REDIS ? "SUBSCRIBE" : "CONNECT/SUB");
        conn_set_state(c, CS_SUBSCRIBING);
    } else {
        conn_set_state(c, CS_OPEN);
        if (c->role == ROLE_SUB)
            ADD(w->subs_open, 1);
    }
    if (c->role == ROLE_SLOW) {
        /* Slow subscribers parse their set-up replies with plain reads (see slow_read). */
        return;
    }
    recv_arm(c);
}

static void conn_open(struct conn *c)
{
    struct worker *w = c->w;
    int fd = socket(F.ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
            struct rlimit rl;
            getrlimit(RLIMIT_NOFILE, &rl);
            die("out of file descriptors after %ld connections (%s; RLIMIT_NOFILE is %llu)",
                (long)LD(w->connected) * F.nworkers, strerror(errno),
                (unsigned long long)rl.rlim_cur);
        }
        die("socket: %s", strerror(errno));
    }
    if (O.rcvbuf && c->role != ROLE_PUB) {
        int v = (int)O.rcvbuf;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    }
    if (c->role == ROLE_SLOW && O.slow_rate > 0) {
        /* A small receive buffer, so that the relay sees the slow reader soon. */
        int v = 64 * 1024;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    }
    c->fd = fd;
    conn_set_state(c, CS_CONNECTING);
    w->connecting++;
    struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);
    io_uring_prep_connect(sqe, fd, F.ai->ai_addr, F.ai->ai_addrlen);
    io_uring_sqe_set_data64(sqe, ud(c, OP_CONNECT));
}

static void on_connect_cqe(struct conn *c, int res, uint64_t now)
{
    if (res == -EISCONN)
        res = 0;
    if (res < 0) {
        if (c->role == ROLE_CHURN) {
            c->w->connecting--;
            ADD(c->w->churn_fail, 1);
            close(c->fd);
            c->fd = -1;
            conn_set_state(c, CS_IDLE);
            return;
        }
        if (res == -EADDRNOTAVAIL)
            die("cannot connect to %s:%d after %ld connections: %s (out of local ports?)", O.host,
                O.port, (long)LD(c->w->connected) * F.nworkers, strerror(-res));
        die("cannot connect to %s:%d: %s (after %ld connections)", O.host, O.port, strerror(-res),
            (long)LD(c->w->connected) * F.nworkers);
    }
    if (c->role == ROLE_CHURN) {
        c->w->connecting--;
        conn_set_state(c, CS_OPEN);
        ADD(c->w->churn_ops, 1);
        return;
    }
    on_connected(c, now);
}

static long connect_window(void)
{
    long wdw = CONNECT_WINDOW / F.nworkers;
    return wdw < 16 ? 16 : wdw;
}

/* Opens as many of this worker's connections as the window and --connect-rate allow:
 * subscribers (and slow ones) first, publishers once the controller says every subscriber is
 * open. */
static void connect_more(struct worker *w, uint64_t now)
{
    while (w->connecting < connect_window()) {
        struct conn *c;
        if (w->next_sub < w->nsubs + w->nslows)
            c = w->next_sub < w->nsubs ? w->subs[w->next_sub] : w->slows[w->next_sub - w->nsubs];
        else if (w->phase >= PH_CONNECT_PUBS && w->next_pub < w->npubs)
            c = w->pubs[w->next_pub];
        else
            return;
        if (O.connect_rate > 0) {
            double rate = O.connect_rate / (double)F.nworkers;
            double allowed = (double)(now - w->connect_start) / 1e9 * rate + 1;
            if ((double)w->opened >= allowed)
                return;
        }
        if (c->role == ROLE_PUB)
            w->next_pub++;
        else
            w->next_sub++;
        w->opened++;
        conn_open(c);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Subscribers */

static void count_corrupt(struct conn *c)
{
    enum phase ph = c->w->phase;
    if (ph >= PH_PREP_MEASURE && ph != PH_HOLD)
        c->corrupt++;
    else
        ADD(setup_corrupt, 1);
}

static void sub_message(struct conn *c, const char *payload, size_t plen, uint64_t now)
{
    struct msg_info mi;
    if (msg_check(&F.fmt, payload, plen, &mi) != 0 || mi.pub >= (unsigned)O.pubs) {
        count_corrupt(c);
        return;
    }
    if (mi.type == 'W') {
        if (mi.pub == 0 && mi.seq + 1 > LD(c->ready_seq))
            ST(c->ready_seq, mi.seq + 1);
        return;
    }
    if (!c->verify)
        return;
    seq_record(&c->tracks[mi.pub], mi.seq);
    ST(c->nexts[mi.pub], c->tracks[mi.pub].next);
    c->m_valid++;
    uint64_t t = now - F.epoch;
    hist_record(&c->w->lat, t > mi.ts ? t - mi.ts : 0);
}

static void nats_control(struct conn *c, size_t kind, const char *line, size_t len)
{
    if (kind == MSG_CTL_PING) {
        if (c->role == ROLE_PUB)
            c->pub->pong_due = true;
        else
            send(c->fd, "PONG\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else if (kind == MSG_CTL_PONG && LD(c->state) == CS_SUBSCRIBING) {
        conn_set_state(c, CS_OPEN);
        if (c->role == ROLE_SUB)
            ADD(c->w->subs_open, 1);
    } else if (kind == MSG_CTL_ERR) {
        char name[64], shown[128];
        size_t k = len < sizeof(shown) - 1 ? len : sizeof(shown) - 1;
        memcpy(shown, line, k);
        while (k && (shown[k - 1] == '\r' || shown[k - 1] == '\n'))
            k--;
        shown[k] = 0;
        if (in_setup())
            die("%s: the server says \"%s\"", conn_name(c, name, sizeof(name)), shown);
        runtime_error("%s: the server says \"%s\"", conn_name(c, name, sizeof(name)), shown);
    }
}

/* Parses data[0..n) after what was carried over from the last read. */
static void sub_parse(struct conn *c, const char *data, size_t n, uint64_t now)
{
    struct worker *w = c->w;
    const char *buf = data;
    size_t len = n, off = 0;
    if (c->carry_len) {
        size_t need = c->carry_len + n;
        if (need > w->scratch_cap) {
            char *p = realloc(w->scratch, need);
            if (!p)
                die("out of memory");
            w->scratch = p;
            w->scratch_cap = need;
        }
        memcpy(w->scratch, c->carry, c->carry_len);
        memcpy(w->scratch + c->carry_len, data, n);
        buf = w->scratch;
        len = need;
    }
    if (LD(c->state) == CS_SUBSCRIBING && O.proto == PROTO_REDIS) {
        size_t want = F.fmt.subscribed_len;
        size_t cmp = len < want ? len : want;
        if (memcmp(buf, F.fmt.subscribed, cmp) != 0) {
            char shown[64];
            size_t k = 0;
            for (size_t i = 0; i < len && k + 4 < sizeof(shown); i++) {
                unsigned char ch = (unsigned char)buf[i];
                if (ch == '\r' || ch == '\n')
                    ch = ' ';
                shown[k++] = (ch >= 32 && ch < 127) ? (char)ch : '?';
            }
            shown[k] = 0;
            die("subscriber %u: unexpected reply to SUBSCRIBE: \"%s\" (is this redis?)", c->idx,
                shown);
        }
        if (len < want)
            goto keep;
        off = want;
        conn_set_state(c, CS_OPEN);
        if (c->role == ROLE_SUB)
            ADD(w->subs_open, 1);
    }
    uint64_t rx = 0;
    while (off < len) {
        const char *payload;
        size_t plen;
        ssize_t r = msg_next(&F.fmt, buf + off, len - off, &payload, &plen);
        if (r == 0)
            break;
        if (r < 0) {
            count_corrupt(c);
            ADD(c->rx, rx);
            conn_failed(c, "stream out of sync (not the expected framing), closed");
            return;
        }
        if (!payload) {
            nats_control(c, plen, buf + off, (size_t)r);
        } else {
            rx += (uint64_t)r;
            if (c->role != ROLE_SLOW)
                sub_message(c, payload, plen, now);
        }
        off += (size_t)r;
    }
    ADD(c->rx, rx);
keep:
    if (off < len) {
        size_t rest = len - off;
        if (rest > c->carry_cap) {
            size_t cap = rest + F.fmt.wire_sub + 64;
            char *p = malloc(cap);
            if (!p)
                die("out of memory");
            free(c->carry);
            c->carry = p;
            c->carry_cap = (uint32_t)cap;
        }
        memmove(c->carry, buf + off, rest);
        c->carry_len = (uint32_t)rest;
    } else {
        c->carry_len = 0;
    }
}

/* nats byte counting: messages have a fixed wire size, so the stream is walked from boundary to
 * boundary without looking inside; what is not a message there is the server's control line
 * (PING, answered). */
static void sub_skim(struct conn *c, const char *data, size_t n)
{
    uint64_t rx = 0;
    size_t off = 0;
    while (off < n) {
        if (c->skip) {
            size_t k = n - off < c->skip ? n - off : (size_t)c->skip;
            c->skip -= k;
            rx += k;
            off += k;
            continue;
        }
        if (c->tok_len == 0 && data[off] == 'M') {
            c->skip = F.fmt.wire_sub;
            continue;
        }
        /* A control line: collect it up to its '\n'. */
        while (off < n && c->tok_len < sizeof(c->tok)) {
            char ch = data[off++];
            c->tok[c->tok_len++] = ch;
            if (ch == '\n')
                break;
        }
        if (c->tok[c->tok_len - 1] != '\n') {
            if (c->tok_len < sizeof(c->tok))
                continue;
            /* Not a short control line: out of step. */
            ADD(c->rx, rx);
            count_corrupt(c);
            conn_failed(c, "stream out of sync (not the expected framing), closed");
            return;
        }
        if (c->tok_len >= 4 && !memcmp(c->tok, "PING", 4))
            send(c->fd, "PONG\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
        c->tok_len = 0;
    }
    ADD(c->rx, rx);
}

static void sub_data(struct conn *c, const char *data, size_t n, uint64_t now)
{
    ADD(c->w->rx_total, n);
    ADD(c->w->sub_reads, 1);
    if (c->parse)
        sub_parse(c, data, n, now);
    else if (c->skim)
        sub_skim(c, data, n);
    else
        ADD(c->rx, n);
}

/* ---------------------------------------------------------------------------------------- */
/* Publishers */

static bool w_phase_loaded(const struct worker *w)
{
    return w->phase == PH_WARMUP || w->phase == PH_MEASURE || w->phase == PH_DRAIN;
}

/* Fills the output buffer with the messages now due. Returns how many. */
static size_t pub_generate(struct conn *c, uint64_t now)
{
    struct worker *w = c->w;
    struct pubstate *p = c->pub;
    if (p->gen_done || !w_phase_loaded(w))
        return 0;
    bool measured = w->phase != PH_WARMUP;
    char type = measured ? 'M' : 'W';
    uint64_t *seq = measured ? &p->m_seq : &p->w_seq;
    size_t wire = F.fmt.wire_pub;
    uint64_t max_n = (O.rate <= 0 ? PUB_BATCH : PUB_BATCH_RATE) / wire;
    if (max_n == 0)
        max_n = 1;
    if (measured && O.count_mode) {
        uint64_t left = O.count - p->phase_msgs;
        if (left < max_n)
            max_n = left;
    }
    size_t n = 0;
    if (O.rate <= 0) {
        /* Stamped with the time right now, just before the send. */
        uint64_t t = now_ns();
        if (t >= w->phase_end || max_n == 0) {
            p->gen_done = true;
            return 0;
        }
        uint64_t ts = t - F.epoch;
        for (; n < max_n; n++)
            msg_encode(&F.fmt, p->out + n * wire, type, c->idx, (*seq)++, ts);
    } else {
        for (; n < max_n; n++) {
            uint64_t k = p->phase_msgs + n;
            uint64_t due = p->sched_start + (uint64_t)((double)k * 1e9 / O.rate);
            if (due >= w->phase_end) {
                p->gen_done = true;
                break;
            }
            if (due > now)
                break;
            msg_encode(&F.fmt, p->out + n * wire, type, c->idx, (*seq)++, due - F.epoch);
        }
    }
    p->phase_msgs += n;
    if (measured && O.count_mode && p->phase_msgs >= O.count)
        p->gen_done = true;
    p->out_off = 0;
    p->out_len = n * wire;
    p->out_ctl = false;
    return n;
}

static uint64_t pub_next_due(const struct conn *c)
{
    const struct pubstate *p = c->pub;
    return p->sched_start + (uint64_t)((double)p->phase_msgs * 1e9 / O.rate);
}

static void pub_submit(struct conn *c)
{
    struct pubstate *p = c->pub;
    struct io_uring_sqe *sqe = ring_get_sqe(&c->w->ring);
    io_uring_prep_send(sqe, c->fd, p->out + p->out_off, p->out_len - p->out_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud(c, OP_SEND));
    p->inflight = true;
}

static void pub_update_done(struct conn *c)
{
    struct pubstate *p = c->pub;
    bool done = p->gen_done && p->out_off == p->out_len && !p->inflight;
    if (done != LD(p->done))
        ST(p->done, done);
}

/* Starts the next send when none is in flight: the rest of the current buffer, a PONG, or the
 * messages now due. */
static void pub_pump(struct conn *c, uint64_t now)
{
    struct pubstate *p = c->pub;
    if (LD(c->state) != CS_OPEN || p->inflight)
        return;
    if (p->out_off == p->out_len) {
        if (p->pong_due) {
            memcpy(p->out, "PONG\r\n", 6);
            p->out_off = 0;
            p->out_len = 6;
            p->out_ctl = true;
            p->pong_due = false;
        } else if (pub_generate(c, now) == 0) {
            pub_update_done(c);
            return;
        }
    }
    pub_submit(c);
    pub_update_done(c);
}

static void on_send_cqe(struct conn *c, int res, uint64_t now)
{
    struct pubstate *p = c->pub;
    p->inflight = false;
    if (LD(c->state) != CS_OPEN)
        return;
    if (res <= 0) {
        conn_failed_res(c, res == 0 ? -EPIPE : res);
        return;
    }
    p->out_off += (size_t)res;
    if (!p->out_ctl)
        ADD(p->phase_written, (uint64_t)res);
    pub_pump(c, now);
}

static void pub_data(struct conn *c, const char *data, size_t n)
{
    struct pubstate *p = c->pub;
    if (O.proto == PROTO_REDIS) {
        if (!p->checked_reply) {
            p->checked_reply = true;
            if (data[0] != ':') {
                char shown[64];
                size_t k = n < 60 ? n : 60;
                for (size_t i = 0; i < k; i++)
                    shown[i] = (data[i] == '\r' || data[i] == '\n') ? ' ' : data[i];
                shown[k] = 0;
                runtime_error("publisher %u: unexpected reply to PUBLISH: \"%s\"", c->idx, shown);
            }
        }
        return;
    }
    if (O.proto != PROTO_NATS)
        return;
    /* nats: only control lines arrive (INFO, PING, -ERR): scan them line by line. */
    size_t off = 0;
    while (off < n) {
        const char *nl = memchr(data + off, '\n', n - off);
        size_t take = nl ? (size_t)(nl - (data + off)) + 1 : n - off;
        if (c->carry_len + take > c->carry_cap) {
            size_t cap = c->carry_len + take + 256;
            char *q = realloc(c->carry, cap);
            if (!q)
                die("out of memory");
            c->carry = q;
            c->carry_cap = (uint32_t)cap;
        }
        memcpy(c->carry + c->carry_len, data + off, take);
        c->carry_len += (uint32_t)take;
        off += take;
        if (!nl)
            break;
        const char *payload;
        size_t kind;
        if (msg_next(&F.fmt, c->carry, c->carry_len, &payload, &kind) > 0 && !payload)
            nats_control(c, kind, c->carry, c->carry_len);
        c->carry_len = 0;
    }
    pub_pump(c, now_ns());
}

static void pubs_reset_phase(struct worker *w, uint64_t start)
{
    double period = O.rate > 0 ? 1e9 / O.rate : 0;
    for (long i = 0; i < w->npubs; i++) {
        struct conn *c = w->pubs[i];
        struct pubstate *p = c->pub;
        p->phase_msgs = 0;
        ST(p->phase_written, 0);
        p->gen_done = LD(c->state) != CS_OPEN;
        /* Spread the publishers' schedules evenly over one period. */
        p->sched_start = start + (uint64_t)(period * (double)c->idx / (double)O.pubs);
        ST(p->done, p->gen_done);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Slow subscribers and churn */

/* A slow subscriber reads at most --slow-rate bytes/s: every SLOW_TICK a one-shot recv of its
 * budget. */
static void slow_reads(struct worker *w, uint64_t now)
{
    for (long i = 0; i < w->nslows; i++) {
        struct conn *c = w->slows[i];
        if (c->lazy_inflight || c->fd < 0 || LD(c->state) == CS_CONNECTING ||
            LD(c->state) == CS_DEAD || now < c->slow_allowed_at)
            continue;
        size_t budget = (size_t)(O.slow_rate * (double)SLOW_TICK_NS / 1e9);
        if (budget < 1)
            budget = 1;
        if (budget > BIG_READ)
            budget = BIG_READ;
        struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);
        io_uring_prep_recv(sqe, c->fd, w->trash, budget, MSG_DONTWAIT | MSG_TRUNC);
        io_uring_sqe_set_data64(sqe, ud(c, OP_LAZY));
        c->lazy_inflight = true;
        c->slow_allowed_at = now + SLOW_TICK_NS;
    }
}

static void churn_tick(struct worker *w, uint64_t now)
{
    if (!w->nchurns || w->phase != PH_MEASURE || now < w->next_churn)
        return;
    double period = 1e9 * (double)F.nworkers / O.churn;
    while (now >= w->next_churn) {
        w->next_churn += (uint64_t)period;
        struct conn *c = w->churns[w->churn_ops_local++ % (uint64_t)w->nchurns];
        if (LD(c->state) == CS_CONNECTING)
            continue; /* still connecting: skip this turn */
        if (LD(c->state) == CS_OPEN) {
            close(c->fd);
            c->fd = -1;
            conn_set_state(c, CS_IDLE);
        }
        conn_open(c);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Lazy subscribers */

static void lazy_submit(struct conn *c)
{
    struct worker *w = c->w;
    struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);
    if (c->skim) {
        /* NATS subscribers skim what they read for the server's PINGs: a provided buffer. */
        io_uring_prep_recv(sqe, c->fd, NULL, 0, MSG_DONTWAIT);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = w->pbufs.bgid;
    } else {
        io_uring_prep_recv(sqe, c->fd, w->trash, BIG_READ,
                           MSG_DONTWAIT | (O.copy_reads ? 0 : MSG_TRUNC));
    }
    io_uring_sqe_set_data64(sqe, ud(c, OP_LAZY));
    c->lazy_inflight = true;
}

/* One round of lazy reads: a one-shot MSG_DONTWAIT recv on each lazy subscriber that is not
 * watched; one that fills its read goes again at once (on_lazy_cqe). */
static void lazy_reads(struct worker *w, uint64_t now)
{
    if (!w->nlazy || w->phase < PH_WARMUP || w->phase == PH_HOLD || now < w->next_lazy)
        return;
    w->next_lazy = now + (uint64_t)(O.read_interval_us * 1e3);
    for (long i = 0; i < w->nsubs; i++) {
        struct conn *c = w->subs[i];
        if (c->lazy && !c->parse && !c->recv_armed && !c->lazy_inflight && c->fd >= 0 &&
            LD(c->state) == CS_OPEN)
            lazy_submit(c);
    }
}

static void on_lazy_cqe(struct conn *c, struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    const char *data = c->w->trash;
    size_t full = BIG_READ;
    uint16_t bid = 0;
    bool buffer = cqe->flags & IORING_CQE_F_BUFFER;
    if (buffer) {
        bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        data = (const char *)ring_bufs_ptr(&c->w->pbufs, bid);
        full = c->w->pbufs.size;
    }
    c->lazy_inflight = false;
    if (c->fd < 0 || LD(c->state) == CS_DEAD || res == -EAGAIN || res == -EINTR ||
        res == -ENOBUFS) {
        /* nothing */
    } else if (res <= 0) {
        conn_failed_res(c, res);
    } else if (c->role == ROLE_SLOW) {
        ADD(c->rx, (uint64_t)res);
    } else {
        sub_data(c, data, (size_t)res, now_ns());
        if (c->fd >= 0 && (size_t)res == full)
            lazy_submit(c);
    }
    if (buffer)
        ring_bufs_recycle(&c->w->pbufs, bid);
}

/* ---------------------------------------------------------------------------------------- */
/* The worker's event loop */

static void on_recv_cqe(struct conn *c, struct io_uring_cqe *cqe, bool trunc, uint64_t now)
{
    struct worker *w = c->w;
    struct ring_bufs *b = trunc ? &w->tbufs : &w->pbufs;
    bool more = cqe->flags & IORING_CQE_F_MORE;
    int res = cqe->res;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        if (res > 0 && c->fd >= 0 && LD(c->state) != CS_DEAD) {
            const char *data = (const char *)ring_bufs_ptr(b, bid);
            if (c->role == ROLE_PUB)
                pub_data(c, data, (size_t)res);
            else
                sub_data(c, data, (size_t)res, now);
        }
        ring_bufs_recycle(b, bid);
    }
    if (more)
        return;
    c->recv_armed = false;
    if (c->fd < 0 || LD(c->state) == CS_DEAD)
        return;
    if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED)) {
        conn_failed_res(c, res);
        return;
    }
    if (c->role == ROLE_PUB || sub_wants_recv(c))
        recv_arm(c);
}

static void subs_set_lowat(struct worker *w, size_t bytes)
{
    int v = bytes > 1 ? (int)bytes : 1;
    for (long i = 0; O.rcvlowat && i < w->nsubs; i++) {
        struct conn *c = w->subs[i];
        if (c->verify || LD(c->state) != CS_OPEN)
            continue;
        if (setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) < 0)
            die("setsockopt SO_RCVLOWAT: %s", strerror(errno));
    }
}

static void subs_set_base(struct worker *w)
{
    for (long i = 0; i < w->nsubs; i++)
        w->subs[i]->base = LD(w->subs[i]->rx);
    for (long i = 0; i < w->nslows; i++)
        w->slows[i]->base = LD(w->slows[i]->rx);
}

/* Entry actions of the phase the controller just announced. */
static void worker_enter(struct worker *w, enum phase ph, uint64_t now)
{
    w->phase = ph;
    w->phase_start = LD(CTL.phase_start);
    switch (ph) {
    case PH_PREP_WARMUP:
        /* Byte-counting subscribers stop parsing now; they are at a message boundary. */
        for (long i = 0; i < w->nsubs; i++) {
            struct conn *c = w->subs[i];
            if (c->verify || !c->parse)
                continue;
            if (c->carry_len)
                die("subscriber %u: %u stray bytes after the readiness messages", c->idx,
                    c->carry_len);
            c->parse = false;
            c->skim = O.proto == PROTO_NATS;
            recv_refresh(c);
        }
        w->next_lazy = now;
        subs_set_base(w);
        subs_set_lowat(w, O.rcvlowat);
        break;
    case PH_WARMUP:
    case PH_MEASURE:
        w->phase_end = LD(CTL.phase_end);
        pubs_reset_phase(w, w->phase_start);
        w->next_churn = now;
        break;
    case PH_WARM_DRAIN:
    case PH_DRAIN:
        subs_set_lowat(w, 1);
        for (long i = 0; CTL.stop && i < w->npubs; i++) {
            w->pubs[i]->pub->gen_done = true;
            pub_update_done(w->pubs[i]);
        }
        break;
    case PH_PREP_MEASURE:
        subs_set_base(w);
        subs_set_lowat(w, O.rcvlowat);
        hist_reset(&w->lat);
        break;
    default:
        break;
    }
}

static void worker_snapshot(struct worker *w, uint64_t now)
{
    w->next_snap = now + NS_PER_S / 2;
    uint64_t lost = 0;
    for (long i = 0; i < w->nsubs; i++) {
        struct conn *c = w->subs[i];
        for (long p = 0; c->verify && p < O.pubs; p++)
            lost += c->tracks[p].lost;
    }
    ST(w->lost_sofar, lost);
    pthread_mutex_lock(&w->snap_mu);
    hist_reset(&w->snap);
    hist_merge(&w->snap, &w->lat);
    pthread_mutex_unlock(&w->snap_mu);
}

static void wake_arm(struct worker *w)
{
    struct io_uring_sqe *sqe = ring_get_sqe(&w->ring);
    io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof(w->efd_val), 0);
    io_uring_sqe_set_data64(sqe, OP_WAKE);
}

static uint64_t worker_deadline(struct worker *w, uint64_t now)
{
    uint64_t deadline = now + MAX_WAIT_NS;
    if (w->next_snap < deadline)
        deadline = w->next_snap;
    if (w->nlazy && w->phase >= PH_WARMUP && w->phase != PH_HOLD && w->next_lazy < deadline)
        deadline = w->next_lazy;
    if (w->nslows && w->phase >= PH_READY)
        deadline = deadline < now + SLOW_TICK_NS ? deadline : now + SLOW_TICK_NS;
    if (w->nchurns && w->phase == PH_MEASURE && w->next_churn < deadline)
        deadline = w->next_churn;
    if (w_phase_loaded(w) && O.rate > 0) {
        for (long i = 0; i < w->npubs; i++) {
            struct conn *c = w->pubs[i];
            struct pubstate *p = c->pub;
            if (LD(c->state) != CS_OPEN || p->inflight || p->gen_done)
                continue;
            uint64_t due = pub_next_due(c);
            if (due < deadline)
                deadline = due;
        }
    }
    if (w->phase <= PH_CONNECT_PUBS && O.connect_rate > 0)
        deadline = deadline < now + 1000000 ? deadline : now + 1000000;
    return deadline > now ? deadline : now;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char err[256];
    unsigned entries = 1024, cq = 16384;
    int ret = ring_setup(&w->ring, entries, cq, &w->feat, err, sizeof(err));
    if (ret < 0)
        die("%s", err);
    long nsock = w->nsubs + w->npubs + w->nslows;
    /* Enough buffers that a socket with much pending cannot take them all and leave the others
     * without (ENOBUFS): subscribers that copy what they read must be served evenly, or the
     * driver itself makes some of them slow. 64 KiB each, as an ordinary program's read buffer:
     * with 16 KiB the driver spent 4x the completions per byte once the relay filled its
     * sockets, fell behind and stayed behind (shape 9 at a third of its speed in some runs). */
    uint32_t nb = 64, per_sock = O.copy_reads ? 4 : 1;
    while (nb < (uint32_t)nsock * per_sock && nb < 16384)
        nb <<= 1;
    if ((ret = ring_bufs_init(&w->ring, &w->pbufs, 0, nb, PARSE_BUF)) < 0 ||
        (ret = ring_bufs_init(&w->ring, &w->tbufs, 1, nb, BIG_READ)) < 0)
        die("cannot set up the provided buffers (%u of %u KiB): %s", nb, BIG_READ / 1024,
            strerror(-ret));
    wake_arm(w);
    w->connect_start = now_ns();
    w->next_snap = w->connect_start + NS_PER_S / 2;

    for (;;) {
        uint64_t now = now_ns();
        unsigned gen = atomic_load_explicit(&CTL.gen, memory_order_acquire);
        if (gen != w->gen) {
            w->gen = gen;
            enum phase ph = ctl_phase();
            if (ph == PH_DONE)
                break;
            worker_enter(w, ph, now);
            atomic_store_explicit(&w->acked, gen, memory_order_release);
        }
        if (w->phase <= PH_CONNECT_PUBS)
            connect_more(w, now);
        if (w->phase == PH_READY && w->npubs && w->pubs[0]->idx == 0) {
            struct conn *c = w->pubs[0];
            struct pubstate *p = c->pub;
            uint64_t round = LD(CTL.ready_round);
            if (round != w->ready_done && !p->inflight && p->out_off == p->out_len) {
                w->ready_done = round;
                msg_encode(&F.fmt, p->out, 'W', 0, p->w_seq++, now - F.epoch);
                p->out_off = 0;
                p->out_len = F.fmt.wire_pub;
                p->out_ctl = true; /* not counted */
                ST(p->ready_sent, p->w_seq);
                pub_submit(c);
            }
        }
        if (w_phase_loaded(w)) {
            for (long i = 0; i < w->npubs; i++) {
                struct conn *c = w->pubs[i];
                struct pubstate *p = c->pub;
                if (LD(c->state) != CS_OPEN || p->inflight)
                    continue;
                if (p->out_off != p->out_len || p->pong_due ||
                    (!p->gen_done && (O.rate <= 0 || pub_next_due(c) <= now)))
                    pub_pump(c, now);
                else if (p->gen_done)
                    pub_update_done(c);
            }
        }
        lazy_reads(w, now);
        if (w->nslows && w->phase >= PH_READY)
            slow_reads(w, now);
        churn_tick(w, now);
        if (now >= w->next_snap)
            worker_snapshot(w, now);

        uint64_t deadline = worker_deadline(w, now);
        struct __kernel_timespec ts = {.tv_sec = (long long)((deadline - now) / NS_PER_S),
                                       .tv_nsec = (long long)((deadline - now) % NS_PER_S)};
        struct io_uring_cqe *cqe;
        ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
            die("io_uring_submit_and_wait_timeout: %s", strerror(-ret));
        now = now_ns();
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            seen++;
            uint64_t data = cqe->user_data;
            enum op op = (enum op)(data & OP_MASK);
            struct conn *c = (struct conn *)(uintptr_t)(data & ~(uint64_t)OP_MASK);
            switch (op) {
            case OP_CONNECT:
                if (LD(c->state) == CS_CONNECTING)
                    on_connect_cqe(c, cqe->res, now);
                break;
            case OP_RECV_P:
            case OP_RECV_T:
                on_recv_cqe(c, cqe, op == OP_RECV_T, now);
                break;
            case OP_SEND:
                on_send_cqe(c, cqe->res, now);
                break;
            case OP_LAZY:
                on_lazy_cqe(c, cqe);
                break;
            case OP_WAKE:
                wake_arm(w);
                break;
            default:
                break;
            }
        }
        io_uring_cq_advance(&w->ring, seen);
        ring_bufs_publish(&w->pbufs);
        ring_bufs_publish(&w->tbufs);
    }
    worker_snapshot(w, now_ns());
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* The controller (main thread): phases, from the workers' counters */

static struct conn *pub_conn(long i)
{
    return &F.conns[O.subs + i];
}

static void announce(enum phase ph, uint64_t now)
{
    F.phase_start = now;
    F.drain_progress_at = now;
    ST(CTL.phase, (int)ph);
    ST(CTL.phase_start, now);
    ST(CTL.phase_end, F.phase_end);
    atomic_fetch_add_explicit(&CTL.gen, 1, memory_order_release);
    uint64_t one = 1;
    for (long i = 0; i < F.nworkers; i++)
        if (write(F.workers[i].efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            die("eventfd write: %s", strerror(errno));
}

static bool all_acked(void)
{
    unsigned gen = LD(CTL.gen);
    for (long i = 0; i < F.nworkers; i++)
        if (atomic_load_explicit(&F.workers[i].acked, memory_order_acquire) != gen)
            return false;
    return true;
}

static uint64_t sum_rx(void)
{
    uint64_t t = 0;
    for (long i = 0; i < F.nworkers; i++)
        t += LD(F.workers[i].rx_total);
    return t;
}

static bool pubs_done(void)
{
    for (long i = 0; i < O.pubs; i++) {
        struct conn *c = pub_conn(i);
        if (LD(c->state) == CS_OPEN && !LD(c->pub->done))
            return false;
    }
    return true;
}

static uint64_t pub_written_total(void)
{
    uint64_t t = 0;
    for (long i = 0; i < O.pubs; i++)
        t += LD(pub_conn(i)->pub->phase_written);
    return t;
}

static uint64_t phase_published(void)
{
    uint64_t total = 0;
    for (long i = 0; i < O.pubs; i++)
        total += LD(pub_conn(i)->pub->phase_written) / F.fmt.wire_pub;
    return total;
}

static bool subs_ready(void)
{
    uint64_t want = LD(pub_conn(0)->pub->ready_sent);
    if (want == 0)
        return false;
    for (long i = 0; i < O.subs; i++) {
        struct conn *c = &F.conns[i];
        if (LD(c->state) == CS_OPEN && LD(c->ready_seq) != want)
            return false;
    }
    return true;
}

/* Whether subscriber c has everything of the phase: `msgs` messages in all. A verified subscriber
 * in the measurement must also have the last message of every publisher (so a duplicate does not
 * make up for a message still in flight). */
static bool sub_has(const struct conn *c, uint64_t msgs, bool measured)
{
    if (LD(c->state) != CS_OPEN)
        return true;
    if (LD(c->rx) - c->base < msgs * F.fmt.wire_sub)
        return false;
    if (measured && c->verify) {
        for (long p = 0; p < O.pubs; p++)
            if (LD(c->nexts[p]) < LD(pub_conn(p)->pub->phase_written) / F.fmt.wire_pub)
                return false;
    }
    return true;
}

static long subs_short(uint64_t msgs, bool measured)
{
    long n = 0;
    for (long i = 0; i < O.subs; i++)
        if (!sub_has(&F.conns[i], msgs, measured))
            n++;
    return n;
}

static void drain_note_progress(uint64_t now)
{
    uint64_t rx = sum_rx(), tx = pub_written_total();
    if (rx != F.drain_seen_rx || tx != F.drain_seen_tx) {
        F.drain_seen_rx = rx;
        F.drain_seen_tx = tx;
        F.drain_progress_at = now;
    }
}

static void start_measure(uint64_t now)
{
    /* The scan of /proc takes a while: do it before the window starts, not inside it. */
    F.others0 = others_cpu_s();
    F.others0_at = now_ns();
    announce(PH_PREP_MEASURE, now);
}

static void finish(uint64_t now)
{
    F.t_end = now;
    cpu_snapshot(&F.cpu1, now);
    F.others1 = others_cpu_s();
    F.others1_at = now_ns();
    F.server_rss_end = server_rss_kb();
    F.server_fds_end = server_fds();
    if (O.pubs > 0 && O.subs > 0) {
        F.phase_end = now + GRACE_NS;
        announce(PH_GRACE, now);
    } else {
        announce(PH_DONE, now);
    }
}

static long sum_long(size_t off)
{
    long t = 0;
    for (long i = 0; i < F.nworkers; i++)
        t += atomic_load_explicit((_Atomic long *)((char *)&F.workers[i] + off),
                                  memory_order_relaxed);
    return t;
}

static void advance(uint64_t now)
{
    if (!all_acked())
        return;
    enum phase ph = ctl_phase();
    switch (ph) {
    case PH_CONNECT_SUBS:
    case PH_CONNECT_PUBS: {
        long connected = sum_long(offsetof(struct worker, connected));
        long subs_open = sum_long(offsetof(struct worker, subs_open));
        if (connected + subs_open != F.connect_seen) {
            F.connect_seen = connected + subs_open;
            F.connect_progress_at = now;
        }
        if (ph == PH_CONNECT_SUBS && subs_open == O.subs && connected >= O.subs + F.nslow) {
            announce(PH_CONNECT_PUBS, now);
        } else if (ph == PH_CONNECT_PUBS && connected == O.subs + O.pubs + F.nslow) {
            if (O.pubs == 0) {
                F.others0 = others_cpu_s();
                F.others0_at = now = now_ns();
                F.phase_end = now + (uint64_t)(O.duration * 1e9);
                cpu_snapshot(&F.cpu0, now);
                announce(PH_HOLD, now);
            } else if (O.subs == 0) {
                announce(PH_PREP_WARMUP, now);
            } else {
                ST(CTL.ready_round, 1);
                F.ready_round_at = now;
                announce(PH_READY, now);
            }
        } else if (now - F.connect_progress_at > CONNECT_TIMEOUT_NS) {
            die("timed out: %ld of %ld connections established, %ld of %ld subscribers ready "
                "after %.0f s without progress",
                connected, O.subs + O.pubs + F.nslow, subs_open, O.subs, CONNECT_TIMEOUT_NS / 1e9);
        }
        break;
    }
    case PH_READY:
        if (subs_ready()) {
            announce(PH_PREP_WARMUP, now);
        } else if (now - F.phase_start > READY_TIMEOUT_NS) {
            long none = 0;
            for (long i = 0; i < O.subs; i++)
                if (LD(F.conns[i].ready_seq) == 0)
                    none++;
            die("subscribers not receiving: after %.0f s, %ld of %ld have received nothing and "
                "%ld not the latest readiness message",
                READY_TIMEOUT_NS / 1e9, none, O.subs, O.subs - none);
        } else if (now - F.ready_round_at >= READY_ROUND_NS) {
            F.ready_round_at = now;
            ST(CTL.ready_round, LD(CTL.ready_round) + 1);
            uint64_t one = 1;
            struct worker *w = pub_conn(0)->w;
            if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                die("eventfd write: %s", strerror(errno));
        }
        break;
    case PH_PREP_WARMUP:
        if (O.warmup <= 0) {
            start_measure(now);
        } else {
            F.phase_end = now + (uint64_t)(O.warmup * 1e9);
            announce(PH_WARMUP, now);
        }
        break;
    case PH_WARMUP:
        if (pubs_done()) {
            F.warm_published = phase_published();
            F.drain_seen_rx = sum_rx();
            announce(PH_WARM_DRAIN, now);
        }
        break;
    case PH_WARM_DRAIN:
        drain_note_progress(now);
        if (subs_short(F.warm_published, false) == 0) {
            start_measure(now);
        } else if (now - F.drain_progress_at > (uint64_t)(O.drain_timeout * 1e9)) {
            runtime_error("warm-up did not drain: %ld subscribers short after %.1f s without "
                          "progress; measuring anyway",
                          subs_short(F.warm_published, false), O.drain_timeout);
            start_measure(now);
        }
        break;
    case PH_PREP_MEASURE:
        now = now_ns();
        F.phase_end = O.count_mode ? UINT64_MAX : now + (uint64_t)(O.duration * 1e9);
        F.last_progress_rx = sum_rx();
        F.last_progress_at = now;
        cpu_snapshot(&F.cpu0, now);
        announce(PH_MEASURE, now);
        break;
    case PH_MEASURE:
        if (CTL.stop || now >= F.phase_end || pubs_done()) {
            F.drain_seen_rx = sum_rx();
            F.drain_seen_tx = pub_written_total();
            announce(PH_DRAIN, now);
        }
        break;
    case PH_DRAIN:
        drain_note_progress(now);
        if (pubs_done() && subs_short(phase_published(), true) == 0) {
            finish(now);
        } else if (now - F.drain_progress_at > (uint64_t)(O.drain_timeout * 1e9)) {
            if (!pubs_done())
                runtime_error("publishers could not write everything: stalled for %.1f s",
                              O.drain_timeout);
            else
                runtime_error("%ld subscribers still short after %.1f s without progress",
                              subs_short(phase_published(), true), O.drain_timeout);
            finish(now);
        }
        break;
    case PH_HOLD:
        if (CTL.stop || now >= F.phase_end)
            finish(now);
        break;
    case PH_GRACE:
        if (CTL.stop || now >= F.phase_end)
            announce(PH_DONE, now);
        break;
    case PH_DONE:
        break;
    }
}

/* How long the controller may sleep: briefly where a phase ends on a condition, longer while
 * the load runs for a fixed time. */
static uint64_t controller_nap(uint64_t now)
{
    enum phase ph = ctl_phase();
    uint64_t nap = CONTROL_TICK_NS;
    if ((ph == PH_MEASURE && !O.count_mode) || ph == PH_HOLD) {
        nap = 20 * CONTROL_TICK_NS;
        if (F.phase_end > now && F.phase_end - now < nap)
            nap = F.phase_end - now;
    }
    if (F.next_progress > now && F.next_progress - now < nap)
        nap = F.next_progress - now;
    return nap;
}

/* ---------------------------------------------------------------------------------------- */
/* Progress and results */

static uint64_t verified_lost_so_far(void)
{
    uint64_t lost = 0;
    for (long i = 0; i < F.nworkers; i++)
        lost += LD(F.workers[i].lost_sofar);
    return lost;
}

static void fmt_rate(char *buf, size_t len, double v)
{
    if (v >= 1e6)
        snprintf(buf, len, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, len, "%.1fk", v / 1e3);
    else
        snprintf(buf, len, "%.0f", v);
}

static void progress(uint64_t now)
{
    double dt = (double)(now - F.last_progress_at) / 1e9;
    uint64_t rx = sum_rx();
    double deliv = dt > 0 ? (double)(rx - F.last_progress_rx) / (double)F.fmt.wire_sub / dt : 0;
    F.last_progress_rx = rx;
    F.last_progress_at = now;
    /* A phase announced by another thread may start after this tick's clock: never below 0. */
    double elapsed = now > F.phase_start ? (double)(now - F.phase_start) / 1e9 : 0;
    char rate[32], p99[32];
    fmt_rate(rate, sizeof(rate), deliv);
    hist_reset(&F.prog_hist);
    for (long i = 0; i < F.nworkers; i++) {
        pthread_mutex_lock(&F.workers[i].snap_mu);
        hist_merge(&F.prog_hist, &F.workers[i].snap);
        pthread_mutex_unlock(&F.workers[i].snap_mu);
    }
    if (F.prog_hist.total && ctl_phase() >= PH_MEASURE)
        snprintf(p99, sizeof(p99), "%.1f us", (double)hist_percentile(&F.prog_hist, 99) / 1e3);
    else
        snprintf(p99, sizeof(p99), "-");
    long live = sum_long(offsetof(struct worker, live));
    fprintf(stderr,
            "flood: %-7s %5.1fs  conns %ld/%ld  %s deliv/s  %.1f MB/s  p99 %s  lost %" PRIu64
            "  errors %" PRIu64 "\n",
            phase_names[ctl_phase()], elapsed, live, O.subs + O.pubs + F.nslow, rate,
            deliv * (double)O.size / 1e6, p99, verified_lost_so_far(), LD(F.errors));
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

struct results {
    uint64_t slow_bytes, slow_closed, churn_connects, churn_failed;
    uint64_t sub_reads, errors, setup_corrupt;
    uint64_t published, expected, deliveries, lost, duplicated, reordered, corrupt;
    double window_s, deliveries_per_s, payload_mb_per_s, flood_cpu, server_cpu, other_cpu,
        softirqd_cpu;
    double lat_us[6];
    uint64_t lat_samples;
};

static void compute(struct results *r)
{
    memset(r, 0, sizeof(*r));
    for (long i = 0; i < F.nworkers; i++) {
        struct worker *w = &F.workers[i];
        r->sub_reads += LD(w->sub_reads);
        r->churn_connects += LD(w->churn_ops);
        r->churn_failed += LD(w->churn_fail);
        hist_merge(&F.lat, &w->lat);
    }
    for (long i = 0; i < F.nslow; i++) {
        struct conn *c = &F.conns[O.subs + O.pubs + i];
        r->slow_bytes += LD(c->rx) - c->base;
        r->slow_closed += c->slow_closed;
    }
    r->errors = LD(F.errors);
    r->setup_corrupt = LD(setup_corrupt);
    uint64_t *per_pub = calloc((size_t)O.pubs + 1, sizeof(*per_pub));
    if (!per_pub)
        die("out of memory");
    bool measured = F.cpu0.wall_ns != 0 && O.pubs > 0;
    for (long i = 0; measured && i < O.pubs; i++) {
        per_pub[i] = LD(pub_conn(i)->pub->phase_written) / F.fmt.wire_pub;
        r->published += per_pub[i];
    }
    r->expected = r->published * (uint64_t)O.subs;
    for (long i = 0; measured && i < O.subs; i++) {
        struct conn *c = &F.conns[i];
        if (c->verify) {
            r->deliveries += c->m_valid;
            r->corrupt += c->corrupt;
            for (long p = 0; p < O.pubs; p++) {
                r->lost += seq_lost_final(&c->tracks[p], per_pub[p]);
                r->duplicated += c->tracks[p].duplicated;
                r->reordered += c->tracks[p].reordered;
            }
        } else {
            uint64_t bytes = LD(c->rx) - c->base;
            uint64_t d = bytes / F.fmt.wire_sub;
            /* A partial message at the end is corruption, unless the connection was cut (then
             * the message is simply lost). */
            if (bytes % F.fmt.wire_sub && LD(c->state) != CS_DEAD)
                r->corrupt++;
            r->deliveries += d;
            if (d < r->published)
                r->lost += r->published - d;
            else
                r->duplicated += d - r->published;
        }
    }
    free(per_pub);
    r->window_s = F.cpu0.wall_ns ? (double)(F.t_end - F.cpu0.wall_ns) / 1e9 : 0;
    if (r->window_s > 0) {
        r->deliveries_per_s = (double)r->deliveries / r->window_s;
        r->payload_mb_per_s = r->deliveries_per_s * (double)O.size / 1e6;
        double wall = (double)(F.cpu1.wall_ns - F.cpu0.wall_ns) / 1e9;
        r->flood_cpu = (F.cpu1.self_s - F.cpu0.self_s) / wall;
        r->server_cpu = (F.cpu0.server_s >= 0 && F.cpu1.server_s >= 0)
                            ? (F.cpu1.server_s - F.cpu0.server_s) / wall
                            : -1;
        r->other_cpu = (F.others0 >= 0 && F.others1 >= 0)
                           ? (F.others1 - F.others0) / ((double)(F.others1_at - F.others0_at) / 1e9)
                           : -1;
        r->softirqd_cpu = (F.cpu1.softirqd_s - F.cpu0.softirqd_s) / wall;
    } else {
        r->server_cpu = -1;
        r->other_cpu = -1;
    }
    static const double pcts[6] = {50, 90, 99, 99.9, 99.99, 100};
    r->lat_samples = F.lat.total;
    for (int i = 0; i < 6; i++)
        r->lat_us[i] = (double)hist_percentile(&F.lat, pcts[i]) / 1e3;
}

static void print_json(FILE *f, const struct results *r)
{
    fprintf(f, "{\n  \"config\": {\"proto\": \"%s\", \"host\": ", proto_name(O.proto));
    json_str(f, O.host);
    fprintf(f, ", \"port\": %d, \"subs\": %ld, \"pubs\": %ld, \"size\": %zu, \"rate\": %g, ",
            O.port, O.subs, O.pubs, O.size, O.rate);
    if (O.count_mode)
        fprintf(f, "\"duration\": null, \"count\": %" PRIu64 ", ", O.count);
    else
        fprintf(f, "\"duration\": %g, \"count\": null, ", O.duration);
    fprintf(f,
            "\"warmup\": %g, \"verify\": %ld, \"connect_rate\": %g, \"threads\": %ld, "
            "\"drain_timeout\": %g, \"rcvlowat\": %zu, \"rcvbuf\": %zu, \"read_interval_us\": %g, "
            "\"copy_reads\": %s, \"expect_lossless\": %s, \"slow_subs\": %ld, "
            "\"slow_rate\": %g, \"churn\": %g, \"repeat\": %ld, \"channel\": ",
            O.warmup, O.verify, O.connect_rate, O.threads, O.drain_timeout, O.rcvlowat, O.rcvbuf,
            O.read_interval_us, O.copy_reads ? "true" : "false",
            O.expect_lossless ? "true" : "false", O.slow_subs, O.slow_rate, O.churn, O.repeat);
    json_str(f, O.channel);
    fprintf(f, ", \"server_pid\": ");
    if (O.server_pid)
        fprintf(f, "%ld", O.server_pid);
    else
        fputs("null", f);
    fprintf(f, ", \"json\": ");
    if (O.json)
        json_str(f, O.json);
    else
        fputs("null", f);
    fprintf(f, "},\n");
    fprintf(f, "  \"wire_size\": {\"publish\": %zu, \"deliver\": %zu},\n", F.fmt.wire_pub,
            F.fmt.wire_sub);
    fprintf(f, "  \"window_s\": %.6f,\n", r->window_s);
    fprintf(f, "  \"published\": %" PRIu64 ",\n", r->published);
    fprintf(f, "  \"expected_deliveries\": %" PRIu64 ",\n", r->expected);
    fprintf(f, "  \"deliveries\": %" PRIu64 ",\n", r->deliveries);
    fprintf(f, "  \"deliveries_per_s\": %.1f,\n", r->deliveries_per_s);
    fprintf(f, "  \"payload_mb_per_s\": %.3f,\n", r->payload_mb_per_s);
    fprintf(f, "  \"lost\": %" PRIu64 ",\n", r->lost);
    fprintf(f, "  \"duplicated\": %" PRIu64 ",\n", r->duplicated);
    fprintf(f, "  \"reordered\": %" PRIu64 ",\n", r->reordered);
    fprintf(f, "  \"corrupt\": %" PRIu64 ",\n", r->corrupt);
    static const char *const names[6] = {"p50", "p90", "p99", "p999", "p9999", "max"};
    fprintf(f, "  \"latency_us\": {");
    for (int i = 0; i < 6; i++) {
        if (r->lat_samples)
            fprintf(f, "\"%s\": %.1f, ", names[i], r->lat_us[i]);
        else
            fprintf(f, "\"%s\": null, ", names[i]);
    }
    fprintf(f, "\"samples\": %" PRIu64 "},\n", r->lat_samples);
    fprintf(f, "  \"errors\": %" PRIu64 ",\n  \"error_messages\": [", r->errors);
    for (int i = 0; i < F.nerror_msgs; i++) {
        if (i)
            fputs(", ", f);
        json_str(f, F.error_msgs[i]);
    }
    fprintf(f, "],\n  \"setup_corrupt\": %" PRIu64 ",\n", r->setup_corrupt);
    fprintf(f, "  \"sub_reads\": %" PRIu64 ",\n", r->sub_reads);
    if (O.slow_subs)
        fprintf(f,
                "  \"slow_subs\": {\"count\": %ld, \"rate_bytes_per_s\": %g, \"bytes\": %" PRIu64
                ", \"disconnected\": %" PRIu64 "},\n",
                O.slow_subs, O.slow_rate, r->slow_bytes, r->slow_closed);
    else
        fprintf(f, "  \"slow_subs\": null,\n");
    if (O.churn > 0)
        fprintf(
            f, "  \"churn\": {\"rate\": %g, \"connects\": %" PRIu64 ", \"failed\": %" PRIu64 "},\n",
            O.churn, r->churn_connects, r->churn_failed);
    else
        fprintf(f, "  \"churn\": null,\n");
    fprintf(f, "  \"flood_cpu\": %.4f,\n", r->flood_cpu);
    if (r->server_cpu >= 0)
        fprintf(f, "  \"server_cpu\": %.4f,\n", r->server_cpu);
    else
        fprintf(f, "  \"server_cpu\": null,\n");
    if (r->other_cpu >= 0)
        fprintf(f, "  \"other_cpu\": %.4f,\n", r->other_cpu);
    else
        fprintf(f, "  \"other_cpu\": null,\n");
    fprintf(f, "  \"softirqd_cpu\": %.4f,\n", r->softirqd_cpu);
    if (O.server_pid)
        fprintf(f,
                "  \"server_rss_kb\": {\"start\": %ld, \"end\": %ld},\n"
                "  \"server_fds\": {\"start\": %ld, \"end\": %ld}\n",
                F.server_rss_start, F.server_rss_end, F.server_fds_start, F.server_fds_end);
    else
        fprintf(f, "  \"server_rss_kb\": null,\n  \"server_fds\": null\n");
    fprintf(f, "}\n");
}

static void print_summary(const struct results *r)
{
    char rate[32];
    fmt_rate(rate, sizeof(rate), r->deliveries_per_s);
    fprintf(stderr,
            "flood: --- %s, %ld subs (%ld verified), %ld pubs, %zu B, rate %g ---\n"
            "flood: window %.2f s, published %" PRIu64 ", deliveries %" PRIu64 " of %" PRIu64
            " (%s/s, %.1f MB/s)\n"
            "flood: lost %" PRIu64 ", duplicated %" PRIu64 ", reordered %" PRIu64
            ", corrupt %" PRIu64 ", errors %" PRIu64 "\n",
            proto_name(O.proto), O.subs, O.verify, O.pubs, O.size, O.rate, r->window_s,
            r->published, r->deliveries, r->expected, rate, r->payload_mb_per_s, r->lost,
            r->duplicated, r->reordered, r->corrupt, r->errors);
    if (r->lat_samples)
        fprintf(stderr,
                "flood: latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  p99.99 %.1f  max "
                "%.1f  (%" PRIu64 " samples)\n",
                r->lat_us[0], r->lat_us[1], r->lat_us[2], r->lat_us[3], r->lat_us[4], r->lat_us[5],
                r->lat_samples);
    if (O.slow_subs)
        fprintf(stderr,
                "flood: slow subscribers: %ld at %g B/s received %" PRIu64 " bytes, %" PRIu64
                " disconnected by the relay\n",
                O.slow_subs, O.slow_rate, r->slow_bytes, r->slow_closed);
    if (O.churn > 0)
        fprintf(stderr, "flood: churn: %" PRIu64 " connects (%" PRIu64 " failed) at %g/s\n",
                r->churn_connects, r->churn_failed, O.churn);
    if (r->server_cpu >= 0)
        fprintf(stderr, "flood: cpu: flood %.2f cores, server %.2f cores\n", r->flood_cpu,
                r->server_cpu);
    else
        fprintf(stderr, "flood: cpu: flood %.2f cores\n", r->flood_cpu);
}

/* ---------------------------------------------------------------------------------------- */
/* HdrHistogram text output */

/* The percentile distribution as HdrHistogram's outputPercentileDistribution prints it (5 ticks
 * per half distance, values in microseconds), so its plotting tools read it. */
static int write_hist(const char *path, const struct hist *h)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    const double scale = 1e3;
    fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    uint64_t cum = 0;
    size_t last = 0;
    double level = 0;
    for (size_t b = 0; h->total && b < h->nbuckets; b++) {
        if (!h->counts[b])
            continue;
        last = b;
        cum += h->counts[b];
        double here = 100.0 * (double)cum / (double)h->total;
        uint64_t v = hist_bucket_high(b);
        if (v > h->max)
            v = h->max;
        while (here >= level && level < 100) {
            fprintf(f, "%12.3f %2.12f %10" PRIu64 " %14.2f\n", (double)v / scale, level / 100, cum,
                    1 / (1 - level / 100));
            double ticks = 5 * pow(2, floor(log2(100 / (100 - level))) + 1);
            level += 100 / ticks;
            if (cum == h->total)
                break;
        }
    }
    double mean = 0, var = 0;
    if (h->total) {
        fprintf(f, "%12.3f %2.12f %10" PRIu64 "\n", (double)h->max / scale, 1.0, h->total);
        mean = hist_mean(h) / scale;
        for (size_t b = 0; b <= last; b++) {
            if (!h->counts[b])
                continue;
            double mid = ((double)hist_bucket_low(b) + (double)hist_bucket_high(b)) / 2 / scale;
            var += (double)h->counts[b] * (mid - mean) * (mid - mean);
        }
        var /= (double)h->total;
    }
    fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", mean, sqrt(var));
    fprintf(f, "#[Max     = %12.3f, Total count    = %12" PRIu64 "]\n",
            (double)(h->total ? h->max : 0) / scale, h->total);
    fprintf(f, "#[Buckets = %12zu, SubBuckets     = %12d]\n", h->nbuckets, 2 << HIST_SUB_BITS);
    return fclose(f) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Set-up and the run */

static void on_signal(int sig)
{
    if (CTL.stop) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
    CTL.stop = 1;
}

static void setup(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    F.nslow = O.slow_subs;
    F.nworkers = O.threads;
    F.nchurn = O.churn > 0 ? 16 * F.nworkers : 0;
    F.nconns = O.subs + O.pubs + F.nslow + F.nchurn;
    if ((rlim_t)F.nconns + 16 + 4 * (rlim_t)F.nworkers > rl.rlim_cur)
        die("%ld connections need about %ld file descriptors, but RLIMIT_NOFILE is %llu (raise "
            "it with ulimit -n)",
            F.nconns, F.nconns + 16, (unsigned long long)rl.rlim_cur);

    if (msgfmt_init(&F.fmt, O.proto, O.size, O.channel) != 0)
        die("out of memory");
    if (hist_init(&F.lat, HIST_HIGHEST) != 0 || hist_init(&F.prog_hist, HIST_HIGHEST) != 0)
        die("out of memory");
    pthread_mutex_init(&F.err_mu, NULL);
    F.conns = calloc((size_t)F.nconns + 1, sizeof(*F.conns));
    F.workers = calloc((size_t)F.nworkers, sizeof(*F.workers));
    if (!F.conns || !F.workers)
        die("out of memory");
    for (long t = 0; t < F.nworkers; t++) {
        struct worker *w = &F.workers[t];
        w->id = (int)t;
        w->subs = calloc((size_t)(O.subs / F.nworkers + 1), sizeof(*w->subs));
        w->pubs = calloc((size_t)(O.pubs / F.nworkers + 1), sizeof(*w->pubs));
        w->slows = calloc((size_t)(F.nslow / F.nworkers + 1), sizeof(*w->slows));
        w->churns = calloc((size_t)(F.nchurn / F.nworkers + 1), sizeof(*w->churns));
        w->trash = malloc(BIG_READ);
        w->scratch_cap = 2 * PARSE_BUF;
        w->scratch = malloc(w->scratch_cap);
        if (!w->subs || !w->pubs || !w->slows || !w->churns || !w->trash || !w->scratch ||
            hist_init(&w->lat, HIST_HIGHEST) != 0 || hist_init(&w->snap, HIST_HIGHEST) != 0)
            die("out of memory");
        pthread_mutex_init(&w->snap_mu, NULL);
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0)
            die("eventfd: %s", strerror(errno));
    }
    /* Connection i goes to worker i % T, so each worker gets its share of every role. */
    for (long i = 0; i < F.nconns; i++) {
        struct conn *c = &F.conns[i];
        struct worker *w = &F.workers[i % F.nworkers];
        c->fd = -1;
        c->w = w;
        if (i < O.subs) {
            c->role = ROLE_SUB;
            c->idx = (uint32_t)i;
            c->parse = true;
            w->subs[w->nsubs++] = c;
        } else if (i < O.subs + O.pubs) {
            c->role = ROLE_PUB;
            c->idx = (uint32_t)(i - O.subs);
            w->pubs[w->npubs++] = c;
        } else if (i < O.subs + O.pubs + F.nslow) {
            c->role = ROLE_SLOW;
            c->idx = (uint32_t)(i - O.subs - O.pubs);
            w->slows[w->nslows++] = c;
        } else {
            c->role = ROLE_CHURN;
            c->idx = (uint32_t)(i - O.subs - O.pubs - F.nslow);
            w->churns[w->nchurns++] = c;
        }
    }

    /* Verified subscribers are spread evenly over the connection order, since a relay may
     * serve its clients in that order. */
    for (long k = 0; k < O.verify; k++) {
        long i = (2 * k + 1) * O.subs / (2 * O.verify);
        struct conn *c = &F.conns[i];
        c->verify = true;
        c->tracks = calloc((size_t)O.pubs + 1, sizeof(*c->tracks));
        c->nexts = calloc((size_t)O.pubs + 1, sizeof(*c->nexts));
        if (!c->tracks || !c->nexts)
            die("out of memory");
        for (long p = 0; p < O.pubs; p++)
            seq_init(&c->tracks[p]);
    }
    for (long i = 0; O.read_interval_us > 0 && i < O.subs; i++) {
        F.conns[i].lazy = !F.conns[i].verify;
        F.conns[i].w->nlazy += F.conns[i].lazy;
    }
    size_t outcap = PUB_BATCH > F.fmt.wire_pub ? PUB_BATCH : F.fmt.wire_pub;
    for (long i = 0; i < O.pubs; i++) {
        struct conn *c = pub_conn(i);
        c->pub = calloc(1, sizeof(*c->pub));
        if (!c->pub || !(c->pub->out = malloc(outcap)))
            die("out of memory");
    }

    if (!F.ai) {
        struct addrinfo hints = {
            .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
        char port[16];
        snprintf(port, sizeof(port), "%d", O.port);
        int rc = getaddrinfo(O.host, port, &hints, &F.ai);
        if (rc != 0)
            die("cannot resolve '%s': %s", O.host, gai_strerror(rc));
    }
}

static void teardown(void)
{
    for (long i = 0; i < F.nconns; i++) {
        struct conn *c = &F.conns[i];
        if (c->fd >= 0)
            close(c->fd);
        free(c->carry);
        for (long p = 0; c->tracks && p < O.pubs; p++)
            seq_free(&c->tracks[p]);
        free(c->tracks);
        free((void *)c->nexts);
        if (c->pub)
            free(c->pub->out);
        free(c->pub);
    }
    for (long t = 0; t < F.nworkers; t++) {
        struct worker *w = &F.workers[t];
        ring_bufs_destroy(&w->ring, &w->pbufs);
        ring_bufs_destroy(&w->ring, &w->tbufs);
        io_uring_queue_exit(&w->ring);
        close(w->efd);
        free(w->subs);
        free(w->pubs);
        free(w->slows);
        free(w->churns);
        free(w->trash);
        free(w->scratch);
        hist_free(&w->lat);
        hist_free(&w->snap);
        pthread_mutex_destroy(&w->snap_mu);
    }
    for (int i = 0; i < F.nerror_msgs; i++)
        free(F.error_msgs[i]);
    free(F.workers);
    free(F.conns);
    hist_free(&F.lat);
    hist_free(&F.prog_hist);
    msgfmt_free(&F.fmt);
    pthread_mutex_destroy(&F.err_mu);
    struct addrinfo *ai = F.ai;
    memset(&F, 0, sizeof(F));
    F.ai = ai;
    ST(CTL.gen, 0);
    ST(CTL.phase, PH_CONNECT_SUBS);
    ST(CTL.ready_round, 0);
    ST(setup_corrupt, 0);
}

static void run(void)
{
    uint64_t now = now_ns();
    F.epoch = now - 1;
    F.connect_progress_at = now;
    F.phase_start = now;
    F.next_progress = now + NS_PER_S;
    F.last_progress_at = now;
    F.server_rss_start = server_rss_kb();
    if (!nsoftirqd)
        find_softirqd();
    F.server_fds_start = server_fds();
    ST(CTL.phase, PH_CONNECT_SUBS);

    /* Workers take no signals: the main thread handles them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (long i = 0; i < F.nworkers; i++)
        if (pthread_create(&F.workers[i].thread, NULL, worker_main, &F.workers[i]) != 0)
            die("cannot start thread %ld: %s", i, strerror(errno));
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    while (ctl_phase() != PH_DONE) {
        now = now_ns();
        if (CTL.stop && in_setup())
            die("interrupted during %s", phase_names[ctl_phase()]);
        advance(now);
        if (ctl_phase() == PH_DONE)
            break;
        if (now >= F.next_progress) {
            progress(now);
            F.next_progress += NS_PER_S;
            if (F.next_progress <= now)
                F.next_progress = now + NS_PER_S;
        }
        uint64_t nap = controller_nap(now);
        struct timespec ts = {(time_t)(nap / NS_PER_S), (long)(nap % NS_PER_S)};
        nanosleep(&ts, NULL);
    }
    for (long i = 0; i < F.nworkers; i++)
        pthread_join(F.workers[i].thread, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Repetitions */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The figures a repetition summarises: name, and where it is in struct results. */
#define FIG_U64(name)                                                                              \
    {                                                                                              \
#name, offsetof(struct results, name), true                                                \
    }
#define FIG_DBL(name)                                                                              \
    {                                                                                              \
#name, offsetof(struct results, name), false                                               \
    }
static const struct {
    const char *name;
    size_t off;
    bool u64;
} figures[] = {
    FIG_U64(published),
    FIG_U64(expected),
    FIG_U64(deliveries),
    FIG_U64(lost),
    FIG_U64(duplicated),
    FIG_U64(reordered),
    FIG_U64(corrupt),
    FIG_U64(errors),
    FIG_DBL(window_s),
    FIG_DBL(deliveries_per_s),
    FIG_DBL(payload_mb_per_s),
    FIG_DBL(flood_cpu),
    FIG_DBL(server_cpu),
    FIG_DBL(other_cpu),
    FIG_DBL(softirqd_cpu),
    {"p50", offsetof(struct results, lat_us[0]), false},
    {"p90", offsetof(struct results, lat_us[1]), false},
    {"p99", offsetof(struct results, lat_us[2]), false},
    {"p999", offsetof(struct results, lat_us[3]), false},
    {"p9999", offsetof(struct results, lat_us[4]), false},
    {"max", offsetof(struct results, lat_us[5]), false},
};
#define NFIG (sizeof(figures) / sizeof(figures[0]))

static double fig_get(const struct results *r, size_t k)
{
    const char *p = (const char *)r + figures[k].off;
    return figures[k].u64 ? (double)*(const uint64_t *)p : *(const double *)p;
}

static void fig_set(struct results *r, size_t k, double v)
{
    char *p = (char *)r + figures[k].off;
    if (figures[k].u64)
        *(uint64_t *)p = (uint64_t)(v + 0.5);
    else
        *(double *)p = v;
}

/* r gets the median of every figure over the runs; lo/hi the extremes. */
static void summarise(const struct results *runs, long n, struct results *r, double *lo, double *hi)
{
    double *v = malloc((size_t)n * sizeof(*v));
    if (!v)
        die("out of memory");
    *r = runs[n - 1];
    for (size_t k = 0; k < NFIG; k++) {
        for (long i = 0; i < n; i++)
            v[i] = fig_get(&runs[i], k);
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
        fig_set(r, k, med);
        lo[k] = v[0];
        hi[k] = v[n - 1];
    }
    free(v);
}

static void print_runs(FILE *f, const struct results *runs, long n, const double *lo,
                       const double *hi)
{
    fprintf(f, ",\n  \"runs\": [");
    for (long i = 0; i < n; i++) {
        fprintf(f, "%s\n    {", i ? "," : "");
        for (size_t k = 0; k < NFIG; k++)
            fprintf(f, "%s\"%s\": %.6g", k ? ", " : "", figures[k].name, fig_get(&runs[i], k));
        fputc('}', f);
    }
    fprintf(f, "\n  ],\n  \"spread\": {");
    for (size_t k = 0; k < NFIG; k++)
        fprintf(f, "%s\"%s\": {\"min\": %.6g, \"max\": %.6g}", k ? ", " : "", figures[k].name,
                lo[k], hi[k]);
    fprintf(f, "}\n}\n");
}

int main(int argc, char **argv)
{
    parse_opts(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* Fixed-rate sends should not wake up 50 us late (the workers inherit it). */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    struct results *runs = calloc((size_t)O.repeat, sizeof(*runs));
    struct hist best;
    if (!runs || hist_init(&best, HIST_HIGHEST) != 0)
        die("out of memory");
    uint64_t lossy = 0;
    FILE *out = stdout;
    if (O.json) {
        out = fopen(O.json, "w");
        if (!out)
            die("cannot write %s: %s", O.json, strerror(errno));
    }
    for (long i = 0; i < O.repeat; i++) {
        if (O.repeat > 1)
            fprintf(stderr, "flood: run %ld of %ld\n", i + 1, O.repeat);
        setup();
        run();
        compute(&runs[i]);
        print_summary(&runs[i]);
        struct results *r = &runs[i];
        lossy += r->lost + r->duplicated + r->reordered + r->corrupt;
        hist_merge(&best, &F.lat);
        if (i + 1 < O.repeat) {
            teardown();
            if (CTL.stop) {
                O.repeat = i + 1;
                break;
            }
        }
    }
    if (O.repeat == 1) {
        print_json(out, &runs[0]);
    } else {
        /* The medians under the usual keys, then every run and the spread. */
        struct results med;
        double lo[NFIG], hi[NFIG];
        summarise(runs, O.repeat, &med, lo, hi);
        char *buf = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&buf, &len);
        if (!mem)
            die("out of memory");
        print_json(mem, &med);
        fclose(mem);
        /* Drop the closing "\n}\n" to append the runs. */
        if (len >= 3 && !memcmp(buf + len - 3, "\n}\n", 3))
            len -= 3;
        fwrite(buf, 1, len, out);
        free(buf);
        print_runs(out, runs, O.repeat, lo, hi);
        fprintf(stderr,
                "flood: median of %ld runs: %.0f deliveries/s (%.0f to %.0f), p99 %.1f us\n",
                O.repeat, med.deliveries_per_s, lo[9], hi[9], med.lat_us[2]);
    }
    if (out != stdout && fclose(out) != 0)
        die("cannot write %s: %s", O.json, strerror(errno));
    /* All runs' latencies together (--repeat): the distribution of every sample. */
    if (O.hist && write_hist(O.hist, &best) != 0)
        die("cannot write %s: %s", O.hist, strerror(errno));
    hist_free(&best);
    free(runs);

    if (O.expect_lossless && lossy) {
        fprintf(stderr, "flood: not lossless\n");
        return 3;
    }
    return 0;
}
