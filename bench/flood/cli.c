/* flood's command line: see cli.h. */
#include "cli.h"

#include "ringcast/opts.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

static const char usage_text[] =
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
    "                            the others only count bytes. Verified subscribers parse\n"
    "                            what they read, so they always copy (any --read-mode)\n"
    "  --connect-rate C          connections opened per second (default 0: no limit,\n"
    "                            at most " STR(
        FLOOD_CONNECT_WINDOW) " handshakes at once)\n"
                              "  --json FILE               write the JSON result there instead of "
                              "stdout\n"
                              "  --server-pid PID          report that process's CPU, RSS and "
                              "descriptors\n"
                              "  --expect-lossless         exit 3 if anything was lost, "
                              "duplicated, reordered or\n"
                              "                            corrupted\n"
                              "  --read-mode copy|trunc|lowat\n"
                              "                            how byte-counting subscribers read "
                              "(default copy):\n"
                              "                            copy = recv into a 64 KiB buffer, as "
                              "ordinary clients\n"
                              "                            do; trunc = MSG_TRUNC, the kernel "
                              "discards the bytes;\n"
                              "                            lowat = copy with SO_RCVLOWAT "
                              "(--rcvlowat, default 64K)\n"
                              "                            while the load runs. nats byte counters "
                              "always copy\n"
                              "  --copy-reads              the same as --read-mode copy (kept for "
                              "old scripts)\n"
                              "  --drain-timeout S         give up on missing deliveries after S "
                              "seconds without\n"
                              "                            progress (default 5)\n"
                              "  --rcvlowat B              byte-counting subscribers wake up only "
                              "once B bytes\n"
                              "                            are waiting while the load runs "
                              "(SO_RCVLOWAT; default\n"
                              "                            64K with --read-mode lowat, else 0 = "
                              "off): fewer,\n"
                              "                            larger reads. Nonzero with copy reads "
                              "is lowat\n"
                              "  --read-interval US        while the load runs, byte-counting "
                              "subscribers are not\n"
                              "                            watched but read every US microseconds "
                              "(default 0:\n"
                              "                            watched and read at once), so that they "
                              "make far\n"
                              "                            fewer reads than the relay makes sends\n"
                              "  --spin-us US              at a fixed rate, while the load runs, "
                              "poll the ring\n"
                              "                            for up to US microseconds after "
                              "activity and before\n"
                              "                            a send is due instead of sleeping; off "
                              "for a second\n"
                              "                            while the thread is preempted (default "
                              "200; 0:\n"
                              "                            always sleep)\n"
                              "  --rcvbuf B                SO_RCVBUF of subscribers (default: the "
                              "system's)\n"
                              "  --channel NAME            redis channel / nats subject (default "
                              "flood)\n"
                              "  --threads T               event loops, one io_uring each, "
                              "connections spread\n"
                              "                            over them (default 1)\n"
                              "  --slow-subs K             K more subscribers that read at most "
                              "--slow-rate\n"
                              "                            bytes/s, reported on their own (default "
                              "0)\n"
                              "  --slow-rate B             bytes/s a slow subscriber reads "
                              "(default 1K)\n"
                              "  --churn C                 connects/disconnects per second of "
                              "extra clients\n"
                              "                            during the measurement (default 0)\n"
                              "  --repeat N                run the workload N times; report the "
                              "medians and the\n"
                              "                            spread (default 1)\n"
                              "  --hist FILE               write the latency percentile "
                              "distribution there\n"
                              "                            (HdrHistogram text format, "
                              "microseconds)\n"
                              "  --tls                     TLS to the relay (OpenSSL): ringcast's "
                              "tls listeners,\n"
                              "                            redis --tls-port, nats --tls (INFO, "
                              "then the upgrade).\n"
                              "                            Subscribers then decrypt what they "
                              "read: copy reads\n"
                              "                            (--read-mode trunc is refused), no "
                              "--slow-subs, --churn\n"
                              "  --tls-ca FILE             verify the server's certificate "
                              "against this CA\n"
                              "  --tls-insecure            do not verify the server's "
                              "certificate\n"
                              "  --tls-servername NAME     SNI and the name verified (default: "
                              "--host)\n"
                              "  --auth TOKEN              ringcast (line, len32): send AUTH "
                              "TOKEN first\n"
                              "  -h, --help, --version\n"
                              "Exit status: 0 done, 1 could not set up, 2 bad arguments, 3 not "
                              "lossless with\n"
                              "--expect-lossless.\n";

const char *cli_usage(void)
{
    return usage_text;
}

const char *cli_read_mode_name(enum read_mode m)
{
    switch (m) {
    case READ_COPY:
        return "copy";
    case READ_TRUNC:
        return "trunc";
    case READ_LOWAT:
        return "lowat";
    }
    return "?";
}

/* Parsers: 0, or -1 with err set (the caller returns CLI_ERROR). */

static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_long(const char *name, const char *s, long min, long max, long *out, char *err,
                      size_t errlen)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return fail(err, errlen, "%s: expected an integer from %ld to %ld, got '%s'", name, min,
                    max, s);
    *out = (long)v;
    return 0;
}

/* A rate or a count of microseconds: any number in [min, max]. */
static int parse_number(const char *name, const char *s, double min, double max, double *out,
                        char *err, size_t errlen)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        return fail(err, errlen, "%s: expected a number from %g to %g, got '%s'", name, min, max,
                    s);
    *out = v;
    return 0;
}

static int parse_seconds(const char *name, const char *s, double min, double max, double *out,
                         char *err, size_t errlen)
{
    double v;
    if (opts_parse_seconds(s, &v) < 0 || v < min || v > max)
        return fail(err, errlen, "%s: expected seconds from %g to %g, such as 5 or 0.5, got '%s'",
                    name, min, max, s);
    *out = v;
    return 0;
}

static int parse_size(const char *name, const char *s, size_t min, size_t max, size_t *out,
                      char *err, size_t errlen)
{
    uint64_t v;
    if (opts_parse_size(s, &v) < 0)
        return fail(err, errlen, "%s: expected a byte count such as 4096, 64K or 8M, got '%s'",
                    name, s);
    if (v < min || v > max)
        return fail(err, errlen, "%s: expected %zu to %zu bytes, got '%s'", name, min, max, s);
    *out = (size_t)v;
    return 0;
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
    OPT_READ_MODE,
    OPT_COPY_READS,
    OPT_DRAIN_TIMEOUT,
    OPT_RCVLOWAT,
    OPT_RCVBUF,
    OPT_READ_INTERVAL,
    OPT_SPIN_US,
    OPT_CHANNEL,
    OPT_THREADS,
    OPT_SLOW_SUBS,
    OPT_SLOW_RATE,
    OPT_CHURN,
    OPT_REPEAT,
    OPT_HIST,
    OPT_TLS,
    OPT_TLS_CA,
    OPT_TLS_INSECURE,
    OPT_TLS_SERVERNAME,
    OPT_AUTH,
    OPT_HELP,
    OPT_VERSION,
};

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
    {"read-mode", required_argument, NULL, OPT_READ_MODE},
    {"copy-reads", no_argument, NULL, OPT_COPY_READS},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
    {"rcvlowat", required_argument, NULL, OPT_RCVLOWAT},
    {"rcvbuf", required_argument, NULL, OPT_RCVBUF},
    {"read-interval", required_argument, NULL, OPT_READ_INTERVAL},
    {"spin-us", required_argument, NULL, OPT_SPIN_US},
    {"channel", required_argument, NULL, OPT_CHANNEL},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"slow-subs", required_argument, NULL, OPT_SLOW_SUBS},
    {"slow-rate", required_argument, NULL, OPT_SLOW_RATE},
    {"churn", required_argument, NULL, OPT_CHURN},
    {"repeat", required_argument, NULL, OPT_REPEAT},
    {"hist", required_argument, NULL, OPT_HIST},
    {"tls", no_argument, NULL, OPT_TLS},
    {"tls-ca", required_argument, NULL, OPT_TLS_CA},
    {"tls-insecure", no_argument, NULL, OPT_TLS_INSECURE},
    {"tls-servername", required_argument, NULL, OPT_TLS_SERVERNAME},
    {"auth", required_argument, NULL, OPT_AUTH},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static void defaults(struct flood_opts *o)
{
    *o = (struct flood_opts){
        .proto = PROTO_LINE,
        .host = "127.0.0.1",
        .port = -1,
        .subs = 10,
        .pubs = 1,
        .size = 64,
        .duration = 10,
        .warmup = 1,
        .verify = -1,
        .read_mode = READ_COPY,
        .drain_timeout = 5,
        .spin_us = 200,
        .threads = 1,
        .channel = "flood",
        .slow_rate = 1024,
        .repeat = 1,
    };
}

/* --auth: ringcast's token rules (1 to 256 bytes, 0x21-0x7e). */
static int check_token(const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n == 0 || n > 256)
        return fail(err, errlen, "--auth: expected a token of 1 to 256 bytes, got %zu", n);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return fail(err, errlen, "--auth: the token may hold printable ASCII only, no spaces");
    return 0;
}

/* --tls and its companions, --auth: what goes with what. */
static int resolve_tls(const struct flood_opts *o, char *err, size_t errlen)
{
    if (!o->tls) {
        if (o->tls_ca || o->tls_insecure || o->tls_servername)
            return fail(err, errlen, "--tls-ca, --tls-insecure and --tls-servername need --tls");
    } else if (!o->tls_ca == !o->tls_insecure) {
        return fail(err, errlen,
                    "--tls needs one of --tls-ca FILE (verify the server) or --tls-insecure");
    } else if (o->read_mode == READ_TRUNC) {
        return fail(err, errlen,
                    "--read-mode trunc: TLS subscribers must decrypt what they read (copy)");
    } else if (o->slow_subs || o->churn > 0) {
        return fail(err, errlen, "--slow-subs and --churn do not work with --tls yet");
    }
    if (o->auth && o->proto != PROTO_LINE && o->proto != PROTO_LEN32)
        return fail(err, errlen, "--auth: ringcast's framings only (line, len32), not %s",
                    proto_name(o->proto));
    return 0;
}

/* What the command line said about reading, resolved once everything is parsed. */
struct read_args {
    bool mode_set, copy_reads, lowat_set;
    enum read_mode mode;
};

static int resolve_reads(struct flood_opts *o, const struct read_args *a, char *err, size_t errlen)
{
    if (a->copy_reads && a->mode_set && a->mode != READ_COPY)
        return fail(err, errlen, "--copy-reads means --read-mode copy, not --read-mode %s",
                    cli_read_mode_name(a->mode));
    o->read_mode = a->mode_set ? a->mode : READ_COPY;
    if (o->read_mode == READ_LOWAT) {
        if (!a->lowat_set)
            o->rcvlowat = FLOOD_LOWAT_DEFAULT;
        else if (o->rcvlowat == 0)
            return fail(err, errlen, "--read-mode lowat needs a nonzero --rcvlowat (default 64K)");
    } else if (o->read_mode == READ_COPY && o->rcvlowat) {
        /* Copy plus SO_RCVLOWAT is exactly lowat: say so in the result. */
        o->read_mode = READ_LOWAT;
    }
    /* trunc keeps a nonzero --rcvlowat as it always did (MSG_TRUNC reads, fewer of them). */
    return 0;
}

enum cli_result cli_parse(struct flood_opts *o, int argc, char *argv[], char *err, size_t errlen)
{
    defaults(o);
    struct read_args ra = {.mode = READ_COPY};
    bool have_duration = false, have_size = false;
    int rc = 0;
    long v = 0;
    optind = 0; /* reset getopt, for repeated calls from tests */
    opterr = 0;
    for (int ch; rc == 0 && (ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1;) {
        switch (ch) {
        case OPT_PROTO:
            if (!strcmp(optarg, "line"))
                o->proto = PROTO_LINE;
            else if (!strcmp(optarg, "len32"))
                o->proto = PROTO_LEN32;
            else if (!strcmp(optarg, "redis"))
                o->proto = PROTO_REDIS;
            else if (!strcmp(optarg, "nats"))
                o->proto = PROTO_NATS;
            else
                rc = fail(err, errlen, "--proto: unknown protocol '%s' (line, len32, redis, nats)",
                          optarg);
            break;
        case OPT_HOST:
            if (!*optarg)
                rc = fail(err, errlen, "--host: empty address");
            o->host = optarg;
            break;
        case OPT_PORT:
            if ((rc = parse_long("--port", optarg, 1, 65535, &v, err, errlen)) == 0)
                o->port = (int)v;
            break;
        case OPT_SUBS:
            rc = parse_long("--subs", optarg, 0, 1000000, &o->subs, err, errlen);
            break;
        case OPT_PUBS:
            rc = parse_long("--pubs", optarg, 0, MSG_MAX_PUBS, &o->pubs, err, errlen);
            break;
        case OPT_SIZE:
            rc = parse_size("--size", optarg, 1, MSG_MAX_SIZE, &o->size, err, errlen);
            have_size = true;
            break;
        case OPT_RATE:
            rc = parse_number("--rate", optarg, 0, 1e9, &o->rate, err, errlen);
            break;
        case OPT_DURATION:
            rc = parse_seconds("--duration", optarg, 0.001, 1e6, &o->duration, err, errlen);
            have_duration = true;
            break;
        case OPT_COUNT:
            if ((rc = parse_long("--count", optarg, 1, (long)(MSG_MAX_SEQ - 1), &v, err, errlen)) ==
                0)
                o->count = (uint64_t)v;
            o->count_mode = true;
            break;
        case OPT_WARMUP:
            rc = parse_seconds("--warmup", optarg, 0, 1e6, &o->warmup, err, errlen);
            break;
        case OPT_VERIFY:
            rc = parse_long("--verify", optarg, 0, 1000000, &o->verify, err, errlen);
            break;
        case OPT_CONNECT_RATE:
            rc = parse_number("--connect-rate", optarg, 0, 1e9, &o->connect_rate, err, errlen);
            break;
        case OPT_JSON:
            o->json = optarg;
            break;
        case OPT_SERVER_PID:
            rc = parse_long("--server-pid", optarg, 1, INT_MAX, &o->server_pid, err, errlen);
            break;
        case OPT_EXPECT_LOSSLESS:
            o->expect_lossless = true;
            break;
        case OPT_READ_MODE:
            if (!strcmp(optarg, "copy"))
                ra.mode = READ_COPY;
            else if (!strcmp(optarg, "trunc"))
                ra.mode = READ_TRUNC;
            else if (!strcmp(optarg, "lowat"))
                ra.mode = READ_LOWAT;
            else
                rc = fail(err, errlen, "--read-mode: unknown mode '%s' (copy, trunc, lowat)",
                          optarg);
            ra.mode_set = true;
            break;
        case OPT_COPY_READS:
            ra.copy_reads = true;
            break;
        case OPT_DRAIN_TIMEOUT:
            rc =
                parse_seconds("--drain-timeout", optarg, 0.01, 1e6, &o->drain_timeout, err, errlen);
            break;
        case OPT_RCVLOWAT:
            rc = parse_size("--rcvlowat", optarg, 0, 64u << 20, &o->rcvlowat, err, errlen);
            ra.lowat_set = true;
            break;
        case OPT_RCVBUF:
            rc = parse_size("--rcvbuf", optarg, 0, 1u << 30, &o->rcvbuf, err, errlen);
            break;
        case OPT_READ_INTERVAL:
            rc = parse_number("--read-interval", optarg, 0, 1e6, &o->read_interval_us, err, errlen);
            break;
        case OPT_SPIN_US:
            rc = parse_number("--spin-us", optarg, 0, 1e6, &o->spin_us, err, errlen);
            break;
        case OPT_CHANNEL:
            if (!*optarg || strlen(optarg) > MSG_MAX_CHANNEL || strpbrk(optarg, " \t\r\n"))
                rc = fail(err, errlen, "--channel: expected 1 to %d bytes", MSG_MAX_CHANNEL);
            o->channel = optarg;
            break;
        case OPT_THREADS:
            rc = parse_long("--threads", optarg, 1, 256, &o->threads, err, errlen);
            break;
        case OPT_SLOW_SUBS:
            rc = parse_long("--slow-subs", optarg, 0, 100000, &o->slow_subs, err, errlen);
            break;
        case OPT_SLOW_RATE: {
            size_t b = 0;
            if ((rc = parse_size("--slow-rate", optarg, 1, 1u << 30, &b, err, errlen)) == 0)
                o->slow_rate = (double)b;
            break;
        }
        case OPT_CHURN:
            rc = parse_number("--churn", optarg, 0, 100000, &o->churn, err, errlen);
            break;
        case OPT_REPEAT:
            rc = parse_long("--repeat", optarg, 1, 1000, &o->repeat, err, errlen);
            break;
        case OPT_HIST:
            o->hist = optarg;
            break;
        case OPT_TLS:
            o->tls = true;
            break;
        case OPT_TLS_CA:
            if (!*optarg)
                rc = fail(err, errlen, "--tls-ca: empty file name");
            o->tls_ca = optarg;
            break;
        case OPT_TLS_INSECURE:
            o->tls_insecure = true;
            break;
        case OPT_TLS_SERVERNAME:
            if (!*optarg || strlen(optarg) > 253 || strpbrk(optarg, " \t\r\n"))
                rc = fail(err, errlen, "--tls-servername: expected a host name");
            o->tls_servername = optarg;
            break;
        case OPT_AUTH:
            rc = check_token(optarg, err, errlen);
            o->auth = optarg;
            break;
        case 'h':
        case OPT_HELP:
            return CLI_HELP;
        case OPT_VERSION:
            return CLI_VERSION;
        case ':':
            rc = fail(err, errlen, "%s: missing value", argv[optind - 1]);
            break;
        default:
            if (optopt)
                rc = fail(err, errlen, "unknown option '-%c'", optopt);
            else
                rc = fail(err, errlen, "unknown option '%s'", argv[optind - 1]);
            break;
        }
    }
    if (rc)
        return CLI_ERROR;
    if (optind < argc) {
        fail(err, errlen, "unexpected argument '%s'", argv[optind]);
        return CLI_ERROR;
    }
    if (o->count_mode && have_duration) {
        fail(err, errlen, "--duration and --count exclude each other");
        return CLI_ERROR;
    }
    if (o->port < 0)
        o->port = o->proto == PROTO_REDIS ? 6379 : o->proto == PROTO_NATS ? 4222 : 5000;
    size_t min = msg_min_size(o->proto);
    if (o->size < min) {
        fail(err, errlen,
             "--size: at least %zu bytes for --proto %s (the message header), got %zu%s", min,
             proto_name(o->proto), o->size, have_size ? "" : " by default");
        return CLI_ERROR;
    }
    if (o->verify < 0 || o->verify > o->subs)
        o->verify = o->subs;
    if (o->pubs == 0 && o->count_mode) {
        fail(err, errlen, "--count needs at least one publisher");
        return CLI_ERROR;
    }
    if (resolve_reads(o, &ra, err, errlen) != 0 || resolve_tls(o, err, errlen) != 0)
        return CLI_ERROR;
    return CLI_RUN;
}
