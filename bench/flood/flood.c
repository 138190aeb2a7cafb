/* flood: the load driver for ringcast (and, for comparison, Redis pub/sub).
 *
 * One thread, one epoll set, non-blocking sockets. Subscribers connect first, then publishers.
 * A run goes through these phases:
 *   connect   open every subscriber (and for Redis SUBSCRIBE and wait for the confirmation),
 *             then every publisher, at most --connect-rate per second;
 *   ready     publisher 0 sends readiness messages, one every 100 ms, until every subscriber has
 *             received the latest one (so every subscriber is registered by the relay, and since
 *             a relay keeps each sender's order, nothing older is still in flight);
 *   warm-up   the real load for --warmup seconds, with messages marked 'W', then a drain until
 *             every subscriber has everything (so no warm-up byte is counted later);
 *   measure   the real load with messages marked 'M' for --duration seconds or --count messages
 *             per publisher, then a drain until every subscriber has everything or nothing moved
 *             for --drain-timeout seconds. The measured window runs from the start of this phase
 *             to the end of its drain; both CPU figures cover exactly that window.
 * Verified subscribers (--verify) parse every message and check each publisher's sequence and the
 * content; the others count bytes with large reads that the kernel discards without copying
 * (recv with MSG_TRUNC; --copy-reads copies into a buffer instead), and their deliveries are
 * derived from the byte count, a whole number of fixed-size messages. With --read-interval they
 * are not watched at all while the load runs but read on a timer, so flood makes far fewer reads
 * (each of which costs a TCP ACK) than the relay makes sends.
 * Latency is measured on verified subscribers only: at a fixed --rate from each message's intended
 * send time (no coordinated omission), at full speed from the moment its batch was generated,
 * just before the write.
 * See bench/README.md for the options and the JSON it prints. */
#include "hist.h"
#include "msg.h"
#include "seq.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOOD_VERSION "0.1.0"

#define BIG_READ (256 * 1024)   /* shared receive buffer */
#define PUB_BATCH (64 * 1024)   /* bytes of messages generated per write at full speed */
#define MAX_BATCHES_PER_TURN 16 /* a full-speed publisher yields after this many writes */
#define MAX_READS_PER_EVENT 4   /* a subscriber yields after this many full reads */
#define CONNECT_WINDOW 256      /* connects in progress at most */
#define NS_PER_S 1000000000ULL
#define READY_ROUND_NS (100 * 1000000ULL)
#define READY_TIMEOUT_NS (10 * NS_PER_S)
#define CONNECT_TIMEOUT_NS (10 * NS_PER_S)
#define MAX_WAIT_NS (50 * 1000000ULL) /* the loop looks at its deadlines at least this often */
#define MAX_EVENTS 512
#define MAX_ERROR_MSGS 10
#define HIST_HIGHEST (60 * NS_PER_S)
#define LAZY_SLICE 8                /* lazy subscribers read per turn of the loop */
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
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: flood [options]\n"
            "Drives publishers and subscribers at a broadcast relay and reports throughput,\n"
            "latency and whether anything was lost, duplicated, reordered or corrupted.\n"
            "\n"
            "  --proto line|len32|redis  wire protocol (ringcast framings or Redis pub/sub)\n"
            "  --host ADDR               relay address (default 127.0.0.1)\n"
            "  --port N                  relay port (default 5000; 6379 for redis)\n"
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
            "                            64K, 0 = off): fewer, larger reads\n"
            "  --read-interval US        while the load runs, byte-counting subscribers are not\n"
            "                            watched but read every US microseconds (default 0:\n"
            "                            watched and read at once), so that they make far\n"
            "                            fewer reads than the relay makes sends\n"
            "  --rcvbuf B                SO_RCVBUF of subscribers (default: the system's)\n"
            "  --channel NAME            redis channel (default flood)\n"
            "  --threads T               event loops (only 1 in this version)\n"
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

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
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
                bad_args("--proto nats: not implemented yet (line, len32, redis)");
            else
                bad_args("--proto: unknown protocol '%s' (line, len32, redis)", optarg);
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
            if (!*optarg || strlen(optarg) > MSG_MAX_CHANNEL)
                bad_args("--channel: expected 1 to %d bytes", MSG_MAX_CHANNEL);
            O.channel = optarg;
            break;
        case OPT_THREADS:
            O.threads = parse_long("--threads", optarg, 1, 1024);
            if (O.threads != 1)
                bad_args("--threads: only 1 is supported in this version");
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
        O.port = O.proto == PROTO_REDIS ? 6379 : 5000;
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

enum phase {
    PH_CONNECT,
    PH_READY,
    PH_WARMUP,
    PH_WARM_DRAIN,
    PH_MEASURE,
    PH_DRAIN,
    PH_HOLD,
    PH_GRACE,
    PH_DONE
};
static const char *const phase_names[] = {"connect", "ready", "warm-up", "warm-up", "measure",
                                          "drain",   "hold",  "grace",   "done"};

enum role { ROLE_SUB, ROLE_PUB };
enum cstate { CS_IDLE, CS_CONNECTING, CS_SUBSCRIBING, CS_OPEN, CS_DEAD };

struct pubstate {
    char *out;
    size_t out_len, out_off;
    uint64_t w_seq, m_seq;  /* next sequence numbers */
    uint64_t phase_msgs;    /* messages generated in the current phase */
    uint64_t phase_written; /* bytes written in the current phase */
    uint64_t sched_start;   /* fixed rate: intended time of message 0 of the phase */
    bool gen_done;          /* generated everything for the current phase */
    bool blocked;           /* waiting for EPOLLOUT */
    bool runnable;          /* full speed: has more to write, yielded */
    bool checked_reply;     /* redis: first reply looked at */
};

struct conn {
    int fd;
    uint8_t role, state;
    bool verify; /* checks every message during the measurement */
    bool parse;  /* parses what it receives (verified, or during setup) */
    bool lazy;   /* --read-interval: polled on a timer while the load runs */
    uint32_t idx;
    uint64_t rx;   /* message bytes received (after the Redis subscription confirmation) */
    uint64_t base; /* rx at the start of the current phase */
    char *carry;   /* parse mode: the incomplete tail of the last read */
    uint32_t carry_len, carry_cap;
    uint64_t ready_seq;      /* 1 + the newest readiness sequence number seen from publisher 0 */
    uint64_t m_valid;        /* intact measured messages */
    uint64_t corrupt;        /* corrupt messages during the measurement */
    struct seqtrack *tracks; /* verified: one per publisher */
    struct pubstate *pub;
};

struct cpu_snap {
    uint64_t wall_ns;
    double self_s;
    double server_s; /* < 0: unknown */
    double softirqd_s;
};

static struct {
    struct msgfmt fmt;
    struct conn *conns; /* subs first, then pubs */
    long nconns;
    int ep;
    struct addrinfo *ai;
    char *bigbuf;
    uint64_t epoch; /* timestamps in messages are relative to this */
    enum phase phase;
    uint64_t phase_start, phase_end;
    uint64_t ready_round_at;
    /* connecting */
    long next_open, connecting, connected, subs_open;
    uint64_t connect_start, connect_progress_at;
    /* counters */
    uint64_t rx_total;  /* all subscriber bytes, for progress */
    uint64_t sub_reads; /* recv calls by subscribers that returned data */
    uint64_t pub_written_total;
    uint64_t drain_seen_rx, drain_seen_tx, drain_progress_at;
    uint64_t warm_published;
    uint64_t setup_corrupt;
    uint64_t errors;
    char *error_msgs[MAX_ERROR_MSGS];
    int nerror_msgs;
    struct hist lat;
    long nlazy;
    uint64_t next_lazy_read;
    long lazy_cursor; /* next subscriber of the current round of lazy reads; -1: none running */
    /* measured window */
    struct cpu_snap cpu0, cpu1;
    double others0, others1; /* others_cpu_s() just before and just after the window */
    uint64_t others0_at, others1_at;
    uint64_t t_end;
    long server_rss_start, server_rss_end, server_fds_start, server_fds_end;
    /* progress */
    uint64_t next_progress, last_progress_rx, last_progress_at;
    volatile sig_atomic_t stop;
} F;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void __attribute__((format(printf, 1, 2))) runtime_error(const char *fmt, ...)
{
    F.errors++;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "flood: %s\n", buf);
    if (F.nerror_msgs < MAX_ERROR_MSGS)
        F.error_msgs[F.nerror_msgs++] = strdup(buf);
}

static const char *conn_name(const struct conn *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s %u", c->role == ROLE_SUB ? "subscriber" : "publisher", c->idx);
    return buf;
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
/* Connections */

static void conn_kill(struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(F.ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->state == CS_CONNECTING)
        F.connecting--;
    c->state = CS_DEAD;
    if (c->pub) {
        c->pub->runnable = false;
        c->pub->blocked = false;
        c->pub->gen_done = true;
        c->pub->out_len = c->pub->out_off = 0;
    }
}

/* A connection failed. Before the load starts that is a set-up failure; afterwards it is
 * counted and the run goes on. */
static void conn_failed(struct conn *c, const char *why)
{
    char name[64];
    conn_name(c, name, sizeof(name));
    if (F.phase == PH_CONNECT || F.phase == PH_READY)
        die("%s: %s during set-up", name, why);
    runtime_error("%s: %s (%s)", name, why, phase_names[F.phase]);
    conn_kill(c);
}

static void conn_failed_errno(struct conn *c, int err)
{
    if (err == 0)
        conn_failed(c, "connection closed by the server");
    else
        conn_failed(c, strerror(err));
}

static void ep_set(struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(F.ep, op, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void on_connected(struct conn *c, uint64_t now)
{
    F.connecting--;
    F.connected++;
    F.connect_progress_at = now;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->role == ROLE_SUB) {
        ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
        if (O.proto == PROTO_REDIS) {
            ssize_t n = send(c->fd, F.fmt.subscribe, F.fmt.subscribe_len, MSG_NOSIGNAL);
            if (n != (ssize_t)F.fmt.subscribe_len)
                die("subscriber %u: cannot send SUBSCRIBE: %s", c->idx,
                    n < 0 ? strerror(errno) : "short write");
            c->state = CS_SUBSCRIBING;
        } else {
            c->state = CS_OPEN;
            F.subs_open++;
        }
    } else {
        c->state = CS_OPEN;
        ep_set(c, EPOLLIN | EPOLLOUT | EPOLLET, EPOLL_CTL_MOD);
    }
}

static void conn_open(struct conn *c, uint64_t now)
{
    int fd = socket(F.ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
            struct rlimit rl;
            getrlimit(RLIMIT_NOFILE, &rl);
            die("out of file descriptors after %ld connections (%s; RLIMIT_NOFILE is %llu)",
                F.next_open, strerror(errno), (unsigned long long)rl.rlim_cur);
        }
        die("socket: %s", strerror(errno));
    }
    if (O.rcvbuf && c->role == ROLE_SUB) {
        int v = (int)O.rcvbuf;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    }
    c->fd = fd;
    c->state = CS_CONNECTING;
    F.connecting++;
    if (connect(fd, F.ai->ai_addr, F.ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        int err = errno;
        if (err == EADDRNOTAVAIL)
            die("cannot connect to %s:%d after %ld connections: %s (out of local ports?)", O.host,
                O.port, F.connected, strerror(err));
        die("cannot connect to %s:%d: %s", O.host, O.port, strerror(err));
    }
    ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
    (void)now;
}

static void on_connect_event(struct conn *c, uint64_t now)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == EINPROGRESS || err == EALREADY)
        return;
    if (err)
        die("cannot connect to %s:%d: %s (after %ld connections)", O.host, O.port, strerror(err),
            F.connected);
    on_connected(c, now);
}

/* Opens as many connections as the window and --connect-rate allow: subscribers first, then
 * publishers once every subscriber is open (and subscribed). */
static void connect_more(uint64_t now)
{
    while (F.next_open < F.nconns && F.connecting < CONNECT_WINDOW) {
        struct conn *c = &F.conns[F.next_open];
        if (c->role == ROLE_PUB && F.subs_open < O.subs)
            return;
        if (O.connect_rate > 0) {
            double allowed = (double)(now - F.connect_start) / 1e9 * O.connect_rate + 1;
            if ((double)F.next_open >= allowed)
                return;
        }
        F.next_open++;
        conn_open(c, now);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Subscribers */

static void sub_message(struct conn *c, const char *payload, size_t plen, uint64_t now)
{
    struct msg_info mi;
    if (msg_check(&F.fmt, payload, plen, &mi) != 0 || mi.pub >= (unsigned)O.pubs) {
        if (F.phase >= PH_MEASURE)
            c->corrupt++;
        else
            F.setup_corrupt++;
        return;
    }
    if (mi.type == 'W') {
        if (mi.pub == 0 && mi.seq + 1 > c->ready_seq)
            c->ready_seq = mi.seq + 1;
        return;
    }
    if (!c->verify)
        return;
    seq_record(&c->tracks[mi.pub], mi.seq);
    c->m_valid++;
    uint64_t t = now - F.epoch;
    hist_record(&F.lat, t > mi.ts ? t - mi.ts : 0);
}

/* Reads and parses. Returns false when it stopped with data still waiting. */
static bool sub_read_parse(struct conn *c)
{
    for (int round = 0; round < MAX_READS_PER_EVENT; round++) {
        size_t have = c->carry_len;
        if (have)
            memcpy(F.bigbuf, c->carry, have);
        size_t room = BIG_READ - have;
        ssize_t n = recv(c->fd, F.bigbuf + have, room, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return true;
            if (errno == EINTR)
                continue;
            conn_failed_errno(c, errno);
            return true;
        }
        if (n == 0) {
            conn_failed_errno(c, 0);
            return true;
        }
        c->rx += (uint64_t)n;
        F.rx_total += (uint64_t)n;
        F.sub_reads++;
        uint64_t now = now_ns();
        size_t len = have + (size_t)n, off = 0;
        if (c->state == CS_SUBSCRIBING) {
            size_t want = F.fmt.subscribed_len;
            size_t cmp = len < want ? len : want;
            if (memcmp(F.bigbuf, F.fmt.subscribed, cmp) != 0) {
                char shown[64];
                size_t k = 0;
                for (size_t i = 0; i < len && k + 4 < sizeof(shown); i++) {
                    unsigned char ch = (unsigned char)F.bigbuf[i];
                    if (ch == '\r' || ch == '\n')
                        ch = ' ';
                    shown[k++] = (ch >= 32 && ch < 127) ? (char)ch : '?';
                }
                shown[k] = 0;
                die("subscriber %u: unexpected reply to SUBSCRIBE: \"%s\" (is this redis?)", c->idx,
                    shown);
            }
            if (len < want) {
                off = 0;
                goto keep;
            }
            off = want;
            c->rx -= want;
            F.rx_total -= want;
            c->state = CS_OPEN;
            F.subs_open++;
            F.connect_progress_at = now;
        }
        while (off < len) {
            const char *payload;
            size_t plen;
            ssize_t r = msg_next(&F.fmt, F.bigbuf + off, len - off, &payload, &plen);
            if (r == 0)
                break;
            if (r < 0) {
                if (F.phase >= PH_MEASURE)
                    c->corrupt++;
                else
                    F.setup_corrupt++;
                conn_failed(c, "stream out of sync (not the expected framing), closed");
                return true;
            }
            sub_message(c, payload, plen, now);
            off += (size_t)r;
        }
    keep:
        c->carry_len = 0;
        if (off < len) {
            size_t rest = len - off;
            if (rest > c->carry_cap) {
                size_t cap = rest + F.fmt.wire_sub + 64;
                char *p = realloc(c->carry, cap);
                if (!p)
                    die("out of memory");
                c->carry = p;
                c->carry_cap = (uint32_t)cap;
            }
            memmove(c->carry, F.bigbuf + off, rest);
            c->carry_len = (uint32_t)rest;
        }
        if ((size_t)n < room)
            return true;
    }
    return false;
}

static bool sub_read_count(struct conn *c)
{
    int flags = MSG_DONTWAIT | (O.copy_reads ? 0 : MSG_TRUNC);
    for (int round = 0; round < MAX_READS_PER_EVENT; round++) {
        ssize_t n = recv(c->fd, F.bigbuf, BIG_READ, flags);
        if (n > 0) {
            c->rx += (uint64_t)n;
            F.rx_total += (uint64_t)n;
            F.sub_reads++;
            if (n < BIG_READ)
                return true;
            continue;
        }
        if (n == 0) {
            conn_failed_errno(c, 0);
            return true;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return true;
        if (errno == EINTR)
            continue;
        conn_failed_errno(c, errno);
        return true;
    }
    return false;
}

/* ---------------------------------------------------------------------------------------- */
/* Publishers */

static struct conn *pub_conn(long i)
{
    return &F.conns[O.subs + i];
}

/* Fills the output buffer with the messages now due. Returns how many. */
static size_t pub_generate(struct conn *c, uint64_t now)
{
    struct pubstate *p = c->pub;
    if (p->gen_done || (F.phase != PH_WARMUP && F.phase != PH_MEASURE && F.phase != PH_DRAIN))
        return 0;
    bool measured = F.phase != PH_WARMUP;
    char type = measured ? 'M' : 'W';
    uint64_t *seq = measured ? &p->m_seq : &p->w_seq;
    size_t wire = F.fmt.wire_pub;
    uint64_t max_n = PUB_BATCH / wire;
    if (max_n == 0)
        max_n = 1;
    if (measured && O.count_mode) {
        uint64_t left = O.count - p->phase_msgs;
        if (left < max_n)
            max_n = left;
    }
    size_t n = 0;
    if (O.rate <= 0) {
        /* Stamped with the time right now: a turn of the loop may write many batches. */
        uint64_t t = now_ns();
        if (t >= F.phase_end || max_n == 0) {
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
            if (due >= F.phase_end) {
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
    return n;
}

static uint64_t pub_next_due(const struct conn *c)
{
    const struct pubstate *p = c->pub;
    return p->sched_start + (uint64_t)((double)p->phase_msgs * 1e9 / O.rate);
}

/* Writes what is pending and what is due, until the socket is full, nothing is due, or the turn
 * is over (then the publisher stays runnable). */
static void pub_pump(struct conn *c, uint64_t now)
{
    struct pubstate *p = c->pub;
    if (c->state != CS_OPEN || p->blocked)
        return;
    p->runnable = false;
    for (int batches = 0;;) {
        if (p->out_off == p->out_len) {
            if (batches >= MAX_BATCHES_PER_TURN) {
                p->runnable = !p->gen_done;
                return;
            }
            if (pub_generate(c, now) == 0)
                return;
            batches++;
        }
        ssize_t w =
            send(c->fd, p->out + p->out_off, p->out_len - p->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p->out_off += (size_t)w;
            p->phase_written += (uint64_t)w;
            F.pub_written_total += (uint64_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            p->blocked = true;
            return;
        }
        if (w < 0 && errno == EINTR)
            continue;
        conn_failed_errno(c, w < 0 ? errno : EPIPE);
        return;
    }
}

static void pub_read(struct conn *c)
{
    for (;;) {
        bool peek = O.proto == PROTO_REDIS && !c->pub->checked_reply;
        ssize_t n = recv(c->fd, F.bigbuf, BIG_READ, MSG_DONTWAIT | (peek ? 0 : MSG_TRUNC));
        if (n > 0) {
            if (peek) {
                c->pub->checked_reply = true;
                if (F.bigbuf[0] != ':') {
                    size_t k = (size_t)n < 60 ? (size_t)n : 60;
                    for (size_t i = 0; i < k; i++)
                        if (F.bigbuf[i] == '\r' || F.bigbuf[i] == '\n')
                            F.bigbuf[i] = ' ';
                    F.bigbuf[k] = 0;
                    runtime_error("publisher %u: unexpected reply to PUBLISH: \"%s\"", c->idx,
                                  F.bigbuf);
                }
            }
            continue;
        }
        if (n == 0) {
            conn_failed_errno(c, 0);
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EINTR)
            continue;
        conn_failed_errno(c, errno);
        return;
    }
}

static void pubs_reset_phase(uint64_t now)
{
    double period = O.rate > 0 ? 1e9 / O.rate : 0;
    for (long i = 0; i < O.pubs; i++) {
        struct conn *c = pub_conn(i);
        struct pubstate *p = c->pub;
        p->phase_msgs = 0;
        p->phase_written = 0;
        p->gen_done = c->state != CS_OPEN;
        /* Spread the publishers' schedules evenly over one period. */
        p->sched_start = now + (uint64_t)(period * (double)i / (double)O.pubs);
        p->runnable = c->state == CS_OPEN;
    }
}

/* True when every live publisher has generated and written everything of the phase. */
static bool pubs_done(void)
{
    for (long i = 0; i < O.pubs; i++) {
        struct conn *c = pub_conn(i);
        if (c->state != CS_OPEN)
            continue;
        if (!c->pub->gen_done || c->pub->out_off != c->pub->out_len)
            return false;
    }
    return true;
}

/* Messages of the current phase written in full, over all publishers. */
static uint64_t phase_published(void)
{
    uint64_t total = 0;
    for (long i = 0; i < O.pubs; i++)
        total += pub_conn(i)->pub->phase_written / F.fmt.wire_pub;
    return total;
}

/* ---------------------------------------------------------------------------------------- */
/* Phases */

static void ready_send(uint64_t now)
{
    struct conn *c = pub_conn(0);
    struct pubstate *p = c->pub;
    if (c->state != CS_OPEN)
        die("publisher 0 is gone during set-up");
    if (p->out_off == p->out_len) {
        msg_encode(&F.fmt, p->out, 'W', 0, p->w_seq++, now - F.epoch);
        p->out_off = 0;
        p->out_len = F.fmt.wire_pub;
    }
    F.ready_round_at = now;
    pub_pump(c, now);
}

static bool subs_ready(void)
{
    uint64_t want = pub_conn(0)->pub->w_seq;
    for (long i = 0; i < O.subs; i++) {
        struct conn *c = &F.conns[i];
        if (c->state == CS_OPEN && c->ready_seq != want)
            return false;
    }
    return true;
}

/* Byte-counting subscribers read only once `bytes` are waiting (SO_RCVLOWAT), so they make few
 * large reads while the load runs; 1 again for the drains, which must see every byte. */
static void subs_set_lowat(size_t bytes)
{
    int v = bytes > 1 ? (int)bytes : 1;
    for (long i = 0; O.rcvlowat && i < O.subs; i++) {
        struct conn *c = &F.conns[i];
        if (c->verify || c->state != CS_OPEN)
            continue;
        if (setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) < 0)
            die("setsockopt SO_RCVLOWAT: %s", strerror(errno));
    }
}

static void subs_set_base(void)
{
    for (long i = 0; i < O.subs; i++)
        F.conns[i].base = F.conns[i].rx;
}

/* Whether subscriber c has everything of the phase: `msgs` messages in all. A verified subscriber
 * in the measurement must also have the last message of every publisher (so a duplicate does not
 * make up for a message still in flight). */
static bool sub_has(const struct conn *c, uint64_t msgs, bool measured)
{
    if (c->state != CS_OPEN)
        return true;
    if (c->rx - c->base < msgs * F.fmt.wire_sub)
        return false;
    if (measured && c->verify) {
        for (long p = 0; p < O.pubs; p++)
            if (c->tracks[p].next < pub_conn(p)->pub->phase_written / F.fmt.wire_pub)
                return false;
    }
    return true;
}

/* How many live subscribers still miss something of the phase. */
static long subs_short(uint64_t msgs, bool measured)
{
    long n = 0;
    for (long i = 0; i < O.subs; i++)
        if (!sub_has(&F.conns[i], msgs, measured))
            n++;
    return n;
}

static bool subs_have(uint64_t msgs, bool measured)
{
    for (long i = 0; i < O.subs; i++)
        if (!sub_has(&F.conns[i], msgs, measured))
            return false;
    return true;
}

static void enter_phase(enum phase ph, uint64_t now)
{
    F.phase = ph;
    F.phase_start = now;
    F.drain_progress_at = now;
    F.drain_seen_rx = F.rx_total;
    F.drain_seen_tx = F.pub_written_total;
}

static void start_measure(uint64_t now)
{
    /* The scan of /proc takes a while: do it before the window starts, not inside it. */
    F.others0 = others_cpu_s();
    F.others0_at = now_ns();
    now = F.others0_at;
    enter_phase(PH_MEASURE, now);
    F.phase_end = O.count_mode ? UINT64_MAX : now + (uint64_t)(O.duration * 1e9);
    subs_set_base();
    subs_set_lowat(O.rcvlowat);
    pubs_reset_phase(now);
    hist_reset(&F.lat);
    F.last_progress_rx = F.rx_total;
    F.last_progress_at = now;
    cpu_snapshot(&F.cpu0, now);
}

static void start_warmup(uint64_t now)
{
    /* Byte-counting subscribers stop parsing now; they are at a message boundary. */
    for (long i = 0; i < O.subs; i++) {
        struct conn *c = &F.conns[i];
        if (!c->verify && c->parse) {
            if (c->carry_len)
                die("subscriber %ld: %u stray bytes after the readiness messages", i, c->carry_len);
            c->parse = false;
            /* Lazy subscribers are polled from now on: stop watching them (the relay's sends
             * then find no interested waiter, as with any busy reader). */
            if (c->lazy && c->state == CS_OPEN)
                ep_set(c, 0, EPOLL_CTL_MOD);
        }
    }
    F.next_lazy_read = now;
    if (O.warmup <= 0) {
        start_measure(now);
        return;
    }
    enter_phase(PH_WARMUP, now);
    F.phase_end = now + (uint64_t)(O.warmup * 1e9);
    subs_set_base();
    subs_set_lowat(O.rcvlowat);
    pubs_reset_phase(now);
}

static void drain_note_progress(uint64_t now)
{
    if (F.rx_total != F.drain_seen_rx || F.pub_written_total != F.drain_seen_tx) {
        F.drain_seen_rx = F.rx_total;
        F.drain_seen_tx = F.pub_written_total;
        F.drain_progress_at = now;
    }
}

/* Ends the measured window. With publishers, what still arrives during a short grace period is
 * counted too (a relay that duplicates sends more than expected), outside the window. */
static void finish(uint64_t now)
{
    F.t_end = now;
    cpu_snapshot(&F.cpu1, now);
    F.others1 = others_cpu_s();
    F.others1_at = now_ns();
    F.server_rss_end = server_rss_kb();
    F.server_fds_end = server_fds();
    if (O.pubs > 0 && O.subs > 0) {
        enter_phase(PH_GRACE, now);
        F.phase_end = now + GRACE_NS;
    } else {
        F.phase = PH_DONE;
    }
}

static void advance(uint64_t now)
{
    switch (F.phase) {
    case PH_CONNECT:
        connect_more(now);
        if (F.subs_open == O.subs && F.connected == F.nconns) {
            if (O.pubs == 0) {
                enter_phase(PH_HOLD, now);
                F.others0 = others_cpu_s();
                F.others0_at = now = now_ns();
                F.phase_end = now + (uint64_t)(O.duration * 1e9);
                cpu_snapshot(&F.cpu0, now);
            } else if (O.subs == 0) {
                start_warmup(now);
            } else {
                enter_phase(PH_READY, now);
                ready_send(now);
            }
        } else if (now - F.connect_progress_at > CONNECT_TIMEOUT_NS) {
            die("timed out: %ld of %ld connections established, %ld of %ld subscribers ready "
                "after %.0f s without progress",
                F.connected, F.nconns, F.subs_open, O.subs, CONNECT_TIMEOUT_NS / 1e9);
        }
        break;
    case PH_READY:
        if (subs_ready()) {
            start_warmup(now);
        } else if (now - F.phase_start > READY_TIMEOUT_NS) {
            long none = 0;
            for (long i = 0; i < O.subs; i++)
                if (F.conns[i].ready_seq == 0)
                    none++;
            die("subscribers not receiving: after %.0f s, %ld of %ld have received nothing and "
                "%ld not the latest readiness message",
                READY_TIMEOUT_NS / 1e9, none, O.subs, O.subs - none);
        } else if (now - F.ready_round_at >= READY_ROUND_NS) {
            ready_send(now);
        }
        break;
    case PH_WARMUP:
        if (pubs_done()) {
            F.warm_published = phase_published();
            enter_phase(PH_WARM_DRAIN, now);
            subs_set_lowat(1);
        }
        break;
    case PH_WARM_DRAIN:
        drain_note_progress(now);
        if (subs_have(F.warm_published, false)) {
            start_measure(now);
        } else if (now - F.drain_progress_at > (uint64_t)(O.drain_timeout * 1e9)) {
            runtime_error("warm-up did not drain: %ld subscribers short after %.1f s without "
                          "progress; measuring anyway",
                          subs_short(F.warm_published, false), O.drain_timeout);
            start_measure(now);
        }
        break;
    case PH_MEASURE:
        if (F.stop || now >= F.phase_end || pubs_done()) {
            for (long i = 0; F.stop && i < O.pubs; i++)
                pub_conn(i)->pub->gen_done = true;
            enter_phase(PH_DRAIN, now);
            subs_set_lowat(1);
        }
        break;
    case PH_DRAIN:
        drain_note_progress(now);
        if (pubs_done() && subs_have(phase_published(), true)) {
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
        if (F.stop || now >= F.phase_end)
            finish(now);
        break;
    case PH_GRACE:
        if (F.stop || now >= F.phase_end)
            F.phase = PH_DONE;
        break;
    case PH_DONE:
        break;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Progress and results */

static uint64_t verified_lost_so_far(void)
{
    uint64_t lost = 0;
    for (long i = 0; i < O.subs; i++) {
        struct conn *c = &F.conns[i];
        if (!c->verify)
            continue;
        for (long p = 0; p < O.pubs; p++)
            lost += c->tracks[p].lost;
    }
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
    double deliv =
        dt > 0 ? (double)(F.rx_total - F.last_progress_rx) / (double)F.fmt.wire_sub / dt : 0;
    F.last_progress_rx = F.rx_total;
    F.last_progress_at = now;
    double elapsed = (double)(now - F.phase_start) / 1e9;
    char rate[32], p99[32];
    fmt_rate(rate, sizeof(rate), deliv);
    if (F.lat.total)
        snprintf(p99, sizeof(p99), "%.1f us", (double)hist_percentile(&F.lat, 99) / 1e3);
    else
        snprintf(p99, sizeof(p99), "-");
    long live = 0;
    for (long i = 0; i < F.nconns; i++)
        if (F.conns[i].state == CS_OPEN || F.conns[i].state == CS_SUBSCRIBING)
            live++;
    fprintf(stderr,
            "flood: %-7s %5.1fs  conns %ld/%ld  %s deliv/s  %.1f MB/s  p99 %s  lost %" PRIu64
            "  errors %" PRIu64 "\n",
            phase_names[F.phase], elapsed, live, F.nconns, rate, deliv * (double)O.size / 1e6, p99,
            verified_lost_so_far(), F.errors);
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
    uint64_t published, expected, deliveries, lost, duplicated, reordered, corrupt;
    double window_s, deliveries_per_s, payload_mb_per_s, flood_cpu, server_cpu, other_cpu,
        softirqd_cpu;
    double lat_us[6];
    uint64_t lat_samples;
};

static void compute(struct results *r)
{
    memset(r, 0, sizeof(*r));
    uint64_t *per_pub = calloc((size_t)O.pubs + 1, sizeof(*per_pub));
    if (!per_pub)
        die("out of memory");
    bool measured = F.cpu0.wall_ns != 0 && O.pubs > 0;
    for (long i = 0; measured && i < O.pubs; i++) {
        per_pub[i] = pub_conn(i)->pub->phase_written / F.fmt.wire_pub;
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
            uint64_t bytes = c->rx - c->base;
            uint64_t d = bytes / F.fmt.wire_sub;
            /* A partial message at the end is corruption, unless the connection was cut (then
             * the message is simply lost). */
            if (bytes % F.fmt.wire_sub && c->state != CS_DEAD)
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
            "\"copy_reads\": %s, \"expect_lossless\": %s, \"channel\": ",
            O.warmup, O.verify, O.connect_rate, O.threads, O.drain_timeout, O.rcvlowat, O.rcvbuf,
            O.read_interval_us, O.copy_reads ? "true" : "false",
            O.expect_lossless ? "true" : "false");
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
    fprintf(f, "  \"errors\": %" PRIu64 ",\n  \"error_messages\": [", F.errors);
    for (int i = 0; i < F.nerror_msgs; i++) {
        if (i)
            fputs(", ", f);
        json_str(f, F.error_msgs[i]);
    }
    fprintf(f, "],\n  \"setup_corrupt\": %" PRIu64 ",\n", F.setup_corrupt);
    fprintf(f, "  \"sub_reads\": %" PRIu64 ",\n", F.sub_reads);
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
            r->duplicated, r->reordered, r->corrupt, F.errors);
    if (r->lat_samples)
        fprintf(stderr,
                "flood: latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  p99.99 %.1f  max "
                "%.1f  (%" PRIu64 " samples)\n",
                r->lat_us[0], r->lat_us[1], r->lat_us[2], r->lat_us[3], r->lat_us[4], r->lat_us[5],
                r->lat_samples);
    if (r->server_cpu >= 0)
        fprintf(stderr, "flood: cpu: flood %.2f cores, server %.2f cores\n", r->flood_cpu,
                r->server_cpu);
    else
        fprintf(stderr, "flood: cpu: flood %.2f cores\n", r->flood_cpu);
}

/* ---------------------------------------------------------------------------------------- */
/* Main loop */

static void on_signal(int sig)
{
    if (F.stop) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
    F.stop = 1;
}

static void setup(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    F.nconns = O.subs + O.pubs;
    if ((rlim_t)F.nconns + 16 > rl.rlim_cur)
        die("%ld connections need about %ld file descriptors, but RLIMIT_NOFILE is %llu (raise "
            "it with ulimit -n)",
            F.nconns, F.nconns + 16, (unsigned long long)rl.rlim_cur);

    if (msgfmt_init(&F.fmt, O.proto, O.size, O.channel) != 0)
        die("out of memory");
    if (hist_init(&F.lat, HIST_HIGHEST) != 0)
        die("out of memory");
    F.bigbuf = malloc(BIG_READ + 1);
    F.conns = calloc((size_t)F.nconns + 1, sizeof(*F.conns));
    if (!F.bigbuf || !F.conns)
        die("out of memory");

    /* Verified subscribers are spread evenly over the connection order, since a relay may
     * serve its clients in that order. */
    for (long i = 0; i < O.subs; i++) {
        struct conn *c = &F.conns[i];
        c->fd = -1;
        c->role = ROLE_SUB;
        c->idx = (uint32_t)i;
        c->parse = true;
    }
    for (long k = 0; k < O.verify; k++) {
        long i = (2 * k + 1) * O.subs / (2 * O.verify);
        struct conn *c = &F.conns[i];
        c->verify = true;
        c->tracks = calloc((size_t)O.pubs + 1, sizeof(*c->tracks));
        if (!c->tracks)
            die("out of memory");
        for (long p = 0; p < O.pubs; p++)
            seq_init(&c->tracks[p]);
    }
    for (long i = 0; O.read_interval_us > 0 && i < O.subs; i++) {
        F.conns[i].lazy = !F.conns[i].verify;
        F.nlazy += F.conns[i].lazy;
    }
    size_t outcap = PUB_BATCH > F.fmt.wire_pub ? PUB_BATCH : F.fmt.wire_pub;
    for (long i = 0; i < O.pubs; i++) {
        struct conn *c = pub_conn(i);
        c->fd = -1;
        c->role = ROLE_PUB;
        c->idx = (uint32_t)i;
        c->pub = calloc(1, sizeof(*c->pub));
        if (!c->pub || !(c->pub->out = malloc(outcap)))
            die("out of memory");
    }

    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    char port[16];
    snprintf(port, sizeof(port), "%d", O.port);
    int rc = getaddrinfo(O.host, port, &hints, &F.ai);
    if (rc != 0)
        die("cannot resolve '%s': %s", O.host, gai_strerror(rc));

    F.ep = epoll_create1(EPOLL_CLOEXEC);
    if (F.ep < 0)
        die("epoll_create1: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* Fixed-rate sends should not wake up 50 us late. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
}

/* One slice of a round of lazy reads: what is waiting on the next LAZY_SLICE lazy subscribers.
 * Between slices the loop looks at its events again, so the verified subscribers' reads (and so
 * their latency figures) are not held up by a whole round. */
static void lazy_reads(uint64_t now)
{
    if (F.lazy_cursor < 0) {
        F.lazy_cursor = 0;
        F.next_lazy_read = now + (uint64_t)(O.read_interval_us * 1e3);
    }
    long done = 0;
    for (; F.lazy_cursor < O.subs && done < LAZY_SLICE; F.lazy_cursor++) {
        struct conn *c = &F.conns[F.lazy_cursor];
        if (c->lazy && !c->parse && c->state == CS_OPEN) {
            while (!sub_read_count(c))
                ;
            done++;
        }
    }
    if (F.lazy_cursor >= O.subs)
        F.lazy_cursor = -1;
}

static uint64_t loop_deadline(uint64_t now)
{
    uint64_t deadline = now + MAX_WAIT_NS;
    if (F.nlazy && F.phase >= PH_WARMUP) {
        if (F.lazy_cursor >= 0)
            return now;
        if (F.next_lazy_read < deadline)
            deadline = F.next_lazy_read > now ? F.next_lazy_read : now;
    }
    if (F.next_progress < deadline)
        deadline = F.next_progress;
    if (F.phase == PH_WARMUP || F.phase == PH_MEASURE || F.phase == PH_DRAIN) {
        if (F.phase_end < deadline)
            deadline = F.phase_end;
        for (long i = 0; i < O.pubs; i++) {
            struct conn *c = pub_conn(i);
            struct pubstate *p = c->pub;
            if (c->state != CS_OPEN || p->blocked || p->gen_done)
                continue;
            if (p->runnable)
                return now;
            if (O.rate > 0) {
                uint64_t due = pub_next_due(c);
                if (due < deadline)
                    deadline = due;
            }
        }
    }
    if (F.phase == PH_CONNECT && O.connect_rate > 0 && F.next_open < F.nconns) {
        uint64_t next = F.connect_start + (uint64_t)((double)F.next_open * 1e9 / O.connect_rate);
        if (next < deadline)
            deadline = next > now ? next : now;
    }
    if ((F.phase == PH_HOLD || F.phase == PH_GRACE) && F.phase_end < deadline)
        deadline = F.phase_end;
    return deadline;
}

static void run(void)
{
    struct epoll_event events[MAX_EVENTS];
    uint64_t now = now_ns();
    F.epoch = now - 1;
    F.lazy_cursor = -1;
    F.connect_start = F.connect_progress_at = now;
    F.phase = PH_CONNECT;
    F.phase_start = now;
    F.next_progress = now + NS_PER_S;
    F.last_progress_at = now;
    F.server_rss_start = server_rss_kb();
    find_softirqd();
    F.server_fds_start = server_fds();

    while (F.phase != PH_DONE) {
        now = now_ns();
        if (F.stop && F.phase != PH_MEASURE && F.phase != PH_DRAIN && F.phase != PH_HOLD &&
            F.phase != PH_GRACE)
            die("interrupted during %s", phase_names[F.phase]);
        advance(now);
        if (F.phase == PH_DONE)
            break;
        if (F.phase == PH_WARMUP || F.phase == PH_MEASURE || F.phase == PH_DRAIN) {
            for (long i = 0; i < O.pubs; i++) {
                struct conn *c = pub_conn(i);
                struct pubstate *p = c->pub;
                if (c->state != CS_OPEN || p->blocked)
                    continue;
                if (p->runnable || p->out_off != p->out_len ||
                    (!p->gen_done && (O.rate <= 0 || pub_next_due(c) <= now)))
                    pub_pump(c, now);
            }
        }
        uint64_t deadline = loop_deadline(now);
        struct timespec ts = {0, 0};
        if (deadline > now) {
            uint64_t d = deadline - now;
            ts.tv_sec = (time_t)(d / NS_PER_S);
            ts.tv_nsec = (long)(d % NS_PER_S);
        }
        int n = epoll_pwait2(F.ep, events, MAX_EVENTS, &ts, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_pwait2: %s", strerror(errno));
        }
        now = now_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            uint32_t ev = events[i].events;
            if (c->state == CS_DEAD || c->state == CS_IDLE)
                continue;
            if (c->state == CS_CONNECTING) {
                on_connect_event(c, now);
                continue;
            }
            if (c->role == ROLE_SUB) {
                if (c->parse) {
                    sub_read_parse(c);
                } else {
                    sub_read_count(c);
                }
            } else {
                if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
                    pub_read(c);
                if (c->state == CS_OPEN && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                    c->pub->blocked = false;
                    pub_pump(c, now);
                }
            }
        }
        if (F.nlazy && F.phase >= PH_WARMUP && (F.lazy_cursor >= 0 || now >= F.next_lazy_read))
            lazy_reads(now);
        if (now >= F.next_progress) {
            progress(now);
            F.next_progress += NS_PER_S;
            if (F.next_progress <= now)
                F.next_progress = now + NS_PER_S;
        }
    }
}

int main(int argc, char **argv)
{
    parse_opts(argc, argv);
    setup();
    run();

    struct results r;
    compute(&r);
    FILE *out = stdout;
    if (O.json) {
        out = fopen(O.json, "w");
        if (!out)
            die("cannot write %s: %s", O.json, strerror(errno));
    }
    print_json(out, &r);
    if (out != stdout && fclose(out) != 0)
        die("cannot write %s: %s", O.json, strerror(errno));
    print_summary(&r);

    if (O.expect_lossless && (r.lost || r.duplicated || r.reordered || r.corrupt)) {
        fprintf(stderr, "flood: not lossless\n");
        return 3;
    }
    return 0;
}
