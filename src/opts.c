/* Option parsing: getopt_long over a table, every value validated with a message naming it. */
#include "ringcast/opts.h"

#include "ringcast/netaddr.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ADDRESS "127.0.0.1"
#define DEFAULT_PORT 5000

static const char usage_text[] =
    "Usage: ringcast [OPTIONS]\n"
    "A TCP broadcast relay: every framed message a client sends goes, unchanged, to every\n"
    "other connected client.\n"
    "\n"
    "  --address ADDR          listen address, IPv4 or IPv6 literal (env ADDRESS; 127.0.0.1;\n"
    "                          '::' listens dual-stack)\n"
    "  --port PORT             listen port, 0 picks a free one (env PORT; 5000)\n"
    "  --listen ADDR:PORT[,role=both|pub|sub][,noauth][,tls][,proxy]\n"
    "                          also listen there (repeatable, up to 8; IPv6 in brackets);\n"
    "                          role=pub clients only publish, role=sub clients only receive\n"
    "                          (one that sends is disconnected); noauth: no AUTH needed there;\n"
    "                          tls: TLS (--tls-cert, --tls-key); proxy: a PROXY protocol\n"
    "                          header (v1 or v2) comes first\n"
    "  --framing line|len32    line: up to and including '\\n' (default);\n"
    "                          len32: 4-byte big-endian length + payload\n"
    "  --echo                  also relay a client's frames back to itself\n"
    "  --max-frame B           longest frame: a line with its '\\n', a len32 payload (1M)\n"
    "  --max-queue B           pending output per client before the slow policy applies (32M)\n"
    "  --pace-window B         publishers wait while none of their receivers is within B of\n"
    "                          the newest frame (1M, at most half of --max-queue)\n"
    "  --slow-policy P         disconnect (default) or drop: discard a slow client's backlog\n"
    "  --max-clients N         connections beyond N are closed at once (10000)\n"
    "  --max-clients-per-ip N  connections from one address beyond N are closed at once\n"
    "                          (0: no limit, the default)\n"
    "  --auth-file FILE        tokens, lines 'ROLE TOKEN' (role both|pub|sub): clients must send\n"
    "                          'AUTH TOKEN' first on every listener without noauth; the file\n"
    "                          must not be readable by group or others; SIGHUP reloads it\n"
    "  --auth-timeout S        time from accept to a complete AUTH frame, TLS handshake and\n"
    "                          PROXY header included (5)\n"
    "  --tls-cert FILE         PEM certificate chain for tls listeners (SIGHUP reloads it)\n"
    "  --tls-key FILE          its PEM private key\n"
    "  --tls-client-ca FILE    PEM CAs: tls listeners require client certificates they\n"
    "                          signed; a certificate's OU pub, sub or both limits its role\n"
    "  --max-tls-handshakes N  TLS handshakes in progress at once; beyond, new TLS\n"
    "                          connections are closed at once (256)\n"
    "  --max-partial-memory B  all incomplete frames together; past it the largest goes (256M)\n"
    "  --frame-timeout S       disconnect a client whose frame stays incomplete S seconds (30;\n"
    "                          0 never)\n"
    "  --backlog N             listen backlog (default: the system's somaxconn)\n"
    "  --zerocopy auto|on|off  zero-copy sends: auto uses them for batches >= --zc-threshold\n"
    "                          and stops on sockets where the kernel copies anyway (auto)\n"
    "  --zc-threshold B        smallest batch sent zero-copy in auto mode (16K)\n"
    "  --drain-timeout S       on SIGINT/SIGTERM, time to flush queued output (5)\n"
    "  --stats-interval S      print a summary line every S seconds (0: never)\n"
    "  --metrics HOST:PORT     serve Prometheus /metrics and /healthz there (off)\n"
    "  -q, --quiet             only the start line, the metrics address, warnings and errors\n"
    "  -v, --verbose           also log every frame received\n"
    "  --log-timestamps        start each log line with its UTC time (RFC 3339)\n"
    "  -h, --help              show this help\n"
    "  --version               show the version\n"
    "\n"
    "Sizes take K, M and G suffixes (powers of 1024); seconds may be fractional.\n";

const char *opts_usage(void)
{
    return usage_text;
}

const char *opts_framing_name(enum framing f)
{
    return f == FRAMING_LEN32 ? "len32" : "line";
}

const char *opts_role_name(enum listen_role r)
{
    return r == ROLE_PUB ? "pub" : r == ROLE_SUB ? "sub" : "both";
}

int opts_parse_size(const char *s, uint64_t *out)
{
    /* strtoull would skip whitespace and accept a sign: insist on a digit first. */
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s)
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    unsigned shift = 0;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return -EINVAL;
    }
    if (*end && end[1] != '\0' && !((end[1] == 'i' || end[1] == 'B') && end[2] == '\0') &&
        !(end[1] == 'i' && end[2] == 'B' && end[3] == '\0'))
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

int opts_parse_seconds(const char *s, double *out)
{
    if (!s || ((*s < '0' || *s > '9') && *s != '.'))
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v) || v < 0 || v > 1e9)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || errno == ERANGE || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

enum {
    OPT_ADDRESS = 256,
    OPT_PORT,
    OPT_FRAMING,
    OPT_ECHO,
    OPT_MAX_FRAME,
    OPT_MAX_QUEUE,
    OPT_SLOW_POLICY,
    OPT_MAX_CLIENTS,
    OPT_MAX_PARTIAL,
    OPT_FRAME_TIMEOUT,
    OPT_BACKLOG,
    OPT_ZEROCOPY,
    OPT_ZC_THRESHOLD,
    OPT_DRAIN_TIMEOUT,
    OPT_STATS_INTERVAL,
    OPT_METRICS,
    OPT_PACE_WINDOW,
    OPT_LOG_TIMESTAMPS,
    OPT_MAX_CLIENTS_PER_IP,
    OPT_LISTEN,
    OPT_AUTH_FILE,
    OPT_AUTH_TIMEOUT,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CLIENT_CA,
    OPT_MAX_TLS_HANDSHAKES,
    OPT_VERSION,
};

static const struct option long_options[] = {
    {"address", required_argument, NULL, OPT_ADDRESS},
    {"port", required_argument, NULL, OPT_PORT},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"framing", required_argument, NULL, OPT_FRAMING},
    {"echo", no_argument, NULL, OPT_ECHO},
    {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
    {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
    {"pace-window", required_argument, NULL, OPT_PACE_WINDOW},
    {"slow-policy", required_argument, NULL, OPT_SLOW_POLICY},
    {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
    {"max-clients-per-ip", required_argument, NULL, OPT_MAX_CLIENTS_PER_IP},
    {"auth-file", required_argument, NULL, OPT_AUTH_FILE},
    {"auth-timeout", required_argument, NULL, OPT_AUTH_TIMEOUT},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA},
    {"max-tls-handshakes", required_argument, NULL, OPT_MAX_TLS_HANDSHAKES},
    {"max-partial-memory", required_argument, NULL, OPT_MAX_PARTIAL},
    {"frame-timeout", required_argument, NULL, OPT_FRAME_TIMEOUT},
    {"backlog", required_argument, NULL, OPT_BACKLOG},
    {"zerocopy", required_argument, NULL, OPT_ZEROCOPY},
    {"zc-threshold", required_argument, NULL, OPT_ZC_THRESHOLD},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
    {"stats-interval", required_argument, NULL, OPT_STATS_INTERVAL},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"log-timestamps", no_argument, NULL, OPT_LOG_TIMESTAMPS},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static void opts_defaults(struct opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->address, sizeof(o->address), "%s", DEFAULT_ADDRESS);
    o->port = DEFAULT_PORT;
    o->framing = FRAMING_LINE;
    o->max_frame = 1u << 20;
    o->max_queue = 32u << 20;
    o->pace_window = 1u << 20;
    o->max_partial_memory = 256u << 20;
    o->slow_policy = SLOW_DISCONNECT;
    o->max_clients = 10000;
    o->zerocopy = ZC_AUTO;
    o->zc_threshold = 16u << 10;
    o->drain_timeout = 5;
    o->frame_timeout = 30;
    o->auth_timeout = 5;
    o->max_tls_handshakes = 256;
    o->verbosity = VERB_NORMAL;
}

/* Messages quote what the user typed: a control character in it (a newline) would break the
 * one-line message, so each becomes '?'. */
static void one_line(char *s, size_t len)
{
    for (size_t i = 0; i < len && s[i]; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            s[i] = '?';
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        one_line(err, errlen);                                                                     \
        return OPTS_ERROR;                                                                         \
    } while (0)

static enum opts_result set_address(struct opts *o, const char *v, const char *what, char *err,
                                    size_t errlen)
{
    if (!*v || strlen(v) >= sizeof(o->address))
        FAIL("invalid %s '%s'", what, v);
    /* Checked here, not at bind time, so that a name is a usage error (exit 2) like any other. */
    union netaddr a;
    socklen_t alen;
    if (netaddr_parse(v, 0, &a, &alen) < 0)
        FAIL("%s: '%s' is not an IPv4 or IPv6 literal (host names are not resolved; use "
             "127.0.0.1 or ::1)",
             what, v);
    snprintf(o->address, sizeof(o->address), "%s", v);
    return OPTS_RUN;
}

static enum opts_result set_port(struct opts *o, const char *v, const char *what, char *err,
                                 size_t errlen)
{
    unsigned long port;
    if (parse_uint(v, 65535, &port) < 0)
        FAIL("invalid %s '%s': expected 0-65535", what, v);
    o->port = (int)port;
    return OPTS_RUN;
}

/* One flag of a --listen value: role=both|pub|sub or noauth, each at most once. */
static enum opts_result listen_flag(struct opts_listen *ls, const char *v, const char *flag,
                                    size_t len, bool *role_set, char *err, size_t errlen)
{
    static const char *const roles[] = {
        [ROLE_BOTH] = "both", [ROLE_PUB] = "pub", [ROLE_SUB] = "sub"};
    if (len == 0)
        FAIL("invalid --listen '%s': an empty flag", v);
    static const struct {
        const char *name;
        size_t offset;
    } switches[] = {
        {"noauth", offsetof(struct opts_listen, noauth)},
        {"tls", offsetof(struct opts_listen, tls)},
        {"proxy", offsetof(struct opts_listen, proxy)},
    };
    for (size_t i = 0; i < sizeof(switches) / sizeof(switches[0]); i++) {
        if (len != strlen(switches[i].name) || memcmp(flag, switches[i].name, len))
            continue;
        bool *on = (bool *)((char *)ls + switches[i].offset);
        if (*on)
            FAIL("invalid --listen '%s': %s given twice", v, switches[i].name);
        *on = true;
        return OPTS_RUN;
    }
    if (len < 5 || memcmp(flag, "role=", 5))
        FAIL("invalid --listen '%s': unknown flag '%.*s' (expected role=both, role=pub, role=sub, "
             "noauth, tls or proxy)",
             v, (int)len, flag);
    if (*role_set)
        FAIL("invalid --listen '%s': role given twice", v);
    for (size_t r = 0; r < sizeof(roles) / sizeof(roles[0]); r++) {
        if (len - 5 == strlen(roles[r]) && !memcmp(flag + 5, roles[r], len - 5)) {
            ls->role = (enum listen_role)r;
            *role_set = true;
            return OPTS_RUN;
        }
    }
    FAIL("invalid --listen '%s': unknown role '%.*s' (expected both, pub or sub)", v, (int)len - 5,
         flag + 5);
}

/* --listen ADDR:PORT[,role=both|pub|sub][,noauth]: one more listener, checked like --address
 * and --port (an IP literal, IPv6 in brackets as in --metrics, since its colons would make the
 * port ambiguous). */
static enum opts_result add_listen(struct opts *o, const char *v, char *err, size_t errlen)
{
    if (o->nlisten == OPTS_LISTEN_MAX)
        FAIL("too many --listen: at most %d besides --address/--port", OPTS_LISTEN_MAX);
    struct opts_listen *ls = &o->listen[o->nlisten];
    memset(ls, 0, sizeof(*ls));
    const char *comma = strchr(v, ',');
    size_t hostport = comma ? (size_t)(comma - v) : strlen(v);
    const char *colon = memrchr(v, ':', hostport);
    if (!colon || v[hostport - 1] == ']') /* "[::1]": the colons are the address's */
        FAIL("invalid --listen '%s': expected ADDR:PORT[,role=both|pub|sub][,noauth][,tls][,proxy]",
             v);
    size_t alen = (size_t)(colon - v);
    char port[8];
    size_t plen = hostport - alen - 1;
    unsigned long n;
    if (plen >= sizeof(port))
        FAIL("invalid --listen '%s': the port must be 0-65535", v);
    memcpy(port, colon + 1, plen);
    port[plen] = '\0';
    if (parse_uint(port, 65535, &n) < 0)
        FAIL("invalid --listen '%s': the port must be 0-65535", v);
    if (alen >= sizeof(ls->address))
        alen = sizeof(ls->address) - 1; /* too long for a literal: refused below */
    memcpy(ls->address, v, alen);
    ls->address[alen] = '\0';
    union netaddr a;
    socklen_t sl;
    if (strchr(ls->address, ':') && ls->address[0] != '[')
        FAIL("invalid --listen '%s': an IPv6 address goes in brackets, such as [::1]:5000", v);
    if (!alen || netaddr_parse(ls->address, 0, &a, &sl) < 0)
        FAIL("--listen: '%s' is not an IPv4 or IPv6 literal (host names are not resolved; use "
             "127.0.0.1 or [::1])",
             ls->address);
    ls->port = (int)n;
    bool role_set = false;
    for (const char *f = comma; f;) {
        const char *next = strchr(f + 1, ',');
        size_t flen = next ? (size_t)(next - f - 1) : strlen(f + 1);
        if (listen_flag(ls, v, f + 1, flen, &role_set, err, errlen) != OPTS_RUN)
            return OPTS_ERROR;
        f = next;
    }
    /* As given (each flag at most once, so it fits), the role first when it was left out. */
    const char *given = comma ? comma + 1 : "";
    if (role_set)
        snprintf(ls->flags, sizeof(ls->flags), "%s", given);
    else
        snprintf(ls->flags, sizeof(ls->flags), "role=both%s%s", *given ? "," : "", given);
    o->nlisten++;
    return OPTS_RUN;
}

static enum opts_result size_arg(const char *name, const char *v, uint64_t min, uint64_t max,
                                 uint64_t *out, char *err, size_t errlen)
{
    uint64_t size;
    if (opts_parse_size(v, &size) < 0)
        FAIL("invalid --%s '%s': expected a byte size such as 4096, 64K or 8M", name, v);
    if (size < min || size > max)
        FAIL("invalid --%s '%s': must be between %llu and %llu bytes", name, v,
             (unsigned long long)min, (unsigned long long)max);
    *out = size;
    return OPTS_RUN;
}

/* A file's path, read later (at start and on SIGHUP): only its length is checked here. */
static enum opts_result path_arg(const char *name, const char *v, char *out, size_t cap, char *err,
                                 size_t errlen)
{
    if (!*v || strlen(v) >= cap)
        FAIL("invalid --%s '%s': expected a path shorter than %zu bytes", name, v, cap);
    snprintf(out, cap, "%s", v);
    return OPTS_RUN;
}

static enum opts_result seconds_arg(const char *name, const char *v, double *out, char *err,
                                    size_t errlen)
{
    if (opts_parse_seconds(v, out) < 0)
        FAIL("invalid --%s '%s': expected seconds, such as 5 or 0.5", name, v);
    return OPTS_RUN;
}

enum opts_result opts_parse(struct opts *o, int argc, char *const argv[], const char *env_address,
                            const char *env_port, char *err, size_t errlen)
{
    opts_defaults(o);
    if (env_address && *env_address && set_address(o, env_address, "ADDRESS", err, errlen))
        return OPTS_ERROR;
    if (env_port && *env_port && set_port(o, env_port, "PORT", err, errlen))
        return OPTS_ERROR;

    /* The frame and log sizes must fit 32-bit lengths and the broadcast log's mapping. */
    const uint64_t max_size = 1ull << 30;
    enum opts_result r = OPTS_RUN;
    unsigned long n;
    int c;
    bool pace_set = false;
    optind = 0; /* reset getopt, also for repeated calls from unit tests */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":qvh", long_options, NULL)) != -1) {
        switch (c) {
        case OPT_ADDRESS:
            r = set_address(o, optarg, "--address", err, errlen);
            break;
        case OPT_PORT:
            r = set_port(o, optarg, "--port", err, errlen);
            break;
        case OPT_LISTEN:
            r = add_listen(o, optarg, err, errlen);
            break;
        case OPT_FRAMING:
            if (!strcmp(optarg, "line"))
                o->framing = FRAMING_LINE;
            else if (!strcmp(optarg, "len32"))
                o->framing = FRAMING_LEN32;
            else
                FAIL("invalid --framing '%s': expected line or len32", optarg);
            break;
        case OPT_ECHO:
            o->echo = true;
            break;
        case OPT_MAX_FRAME:
            r = size_arg("max-frame", optarg, 1, max_size, &o->max_frame, err, errlen);
            break;
        case OPT_MAX_QUEUE:
            r = size_arg("max-queue", optarg, 1, max_size, &o->max_queue, err, errlen);
            break;
        case OPT_PACE_WINDOW:
            r = size_arg("pace-window", optarg, 1, max_size, &o->pace_window, err, errlen);
            pace_set = true;
            break;
        case OPT_MAX_PARTIAL:
            r = size_arg("max-partial-memory", optarg, 1, UINT64_MAX, &o->max_partial_memory, err,
                         errlen);
            break;
        case OPT_ZC_THRESHOLD:
            r = size_arg("zc-threshold", optarg, 0, UINT64_MAX, &o->zc_threshold, err, errlen);
            break;
        case OPT_SLOW_POLICY:
            if (!strcmp(optarg, "disconnect"))
                o->slow_policy = SLOW_DISCONNECT;
            else if (!strcmp(optarg, "drop"))
                o->slow_policy = SLOW_DROP;
            else
                FAIL("invalid --slow-policy '%s': expected disconnect or drop", optarg);
            break;
        case OPT_MAX_CLIENTS:
            if (parse_uint(optarg, 1u << 24, &n) < 0 || n == 0)
                FAIL("invalid --max-clients '%s': expected 1-16777216", optarg);
            o->max_clients = (uint32_t)n;
            break;
        case OPT_MAX_CLIENTS_PER_IP:
            if (parse_uint(optarg, 1u << 24, &n) < 0)
                FAIL("invalid --max-clients-per-ip '%s': expected 0-16777216 (0: no limit)",
                     optarg);
            o->max_clients_per_ip = (uint32_t)n;
            break;
        case OPT_BACKLOG:
            if (parse_uint(optarg, INT_MAX, &n) < 0 || n == 0)
                FAIL("invalid --backlog '%s': expected a positive number", optarg);
            o->backlog = (int)n;
            break;
        case OPT_ZEROCOPY:
            if (!strcmp(optarg, "auto"))
                o->zerocopy = ZC_AUTO;
            else if (!strcmp(optarg, "on"))
                o->zerocopy = ZC_ON;
            else if (!strcmp(optarg, "off"))
                o->zerocopy = ZC_OFF;
            else
                FAIL("invalid --zerocopy '%s': expected auto, on or off", optarg);
            break;
        case OPT_AUTH_FILE:
            r = path_arg("auth-file", optarg, o->auth_file, sizeof(o->auth_file), err, errlen);
            break;
        case OPT_TLS_CERT:
            r = path_arg("tls-cert", optarg, o->tls_cert, sizeof(o->tls_cert), err, errlen);
            break;
        case OPT_TLS_KEY:
            r = path_arg("tls-key", optarg, o->tls_key, sizeof(o->tls_key), err, errlen);
            break;
        case OPT_TLS_CLIENT_CA:
            r = path_arg("tls-client-ca", optarg, o->tls_client_ca, sizeof(o->tls_client_ca), err,
                         errlen);
            break;
        case OPT_MAX_TLS_HANDSHAKES:
            if (parse_uint(optarg, 1u << 24, &n) < 0 || n == 0)
                FAIL("invalid --max-tls-handshakes '%s': expected 1-16777216", optarg);
            o->max_tls_handshakes = (uint32_t)n;
            break;
        case OPT_AUTH_TIMEOUT:
            r = seconds_arg("auth-timeout", optarg, &o->auth_timeout, err, errlen);
            if (r == OPTS_RUN && o->auth_timeout <= 0)
                FAIL("invalid --auth-timeout '%s': must be more than 0 seconds", optarg);
            break;
        case OPT_DRAIN_TIMEOUT:
            r = seconds_arg("drain-timeout", optarg, &o->drain_timeout, err, errlen);
            break;
        case OPT_FRAME_TIMEOUT:
            r = seconds_arg("frame-timeout", optarg, &o->frame_timeout, err, errlen);
            break;
        case OPT_STATS_INTERVAL:
            r = seconds_arg("stats-interval", optarg, &o->stats_interval, err, errlen);
            break;
        case OPT_METRICS: {
            union netaddr a;
            socklen_t alen;
            if (strlen(optarg) >= sizeof(o->metrics) || netaddr_parse_hostport(optarg, &a, &alen))
                FAIL("invalid --metrics '%s': expected HOST:PORT, such as 127.0.0.1:9100 or "
                     "[::1]:9100",
                     optarg);
            snprintf(o->metrics, sizeof(o->metrics), "%s", optarg);
            break;
        }
        case 'q':
            o->verbosity = VERB_QUIET;
            break;
        case 'v':
            o->verbosity = VERB_VERBOSE;
            break;
        case OPT_LOG_TIMESTAMPS:
            o->log_timestamps = true;
            break;
        case 'h':
            return OPTS_HELP;
        case OPT_VERSION:
            return OPTS_VERSION;
        case ':':
            if (optopt && optopt < 256)
                FAIL("option '-%c' needs a value", optopt);
            FAIL("option '%s' needs a value", argv[optind - 1]);
        default:
            /* In a group like -xq getopt has not moved past the bad letter yet: name it. */
            if (optopt > 0 && optopt < 256)
                FAIL("unknown option '-%c' (see --help)", optopt);
            FAIL("unknown option '%s' (see --help)", argv[optind - 1]);
        }
        if (r != OPTS_RUN)
            return r;
    }
    if (optind < argc)
        FAIL("unexpected argument '%s' (see --help)", argv[optind]);
    if (o->max_frame > o->max_queue)
        FAIL("--max-frame (%llu) must not be larger than --max-queue (%llu)",
             (unsigned long long)o->max_frame, (unsigned long long)o->max_queue);
    if (pace_set && o->pace_window > o->max_queue)
        FAIL("--pace-window (%llu) must not be larger than --max-queue (%llu)",
             (unsigned long long)o->pace_window, (unsigned long long)o->max_queue);
    for (unsigned i = 0; i < o->nlisten; i++)
        if (o->listen[i].tls && (!o->tls_cert[0] || !o->tls_key[0]))
            FAIL("--listen %s:%d,tls needs --tls-cert and --tls-key", o->listen[i].address,
                 o->listen[i].port);
    if (!pace_set && o->pace_window > o->max_queue / 2)
        o->pace_window = o->max_queue / 2 ? o->max_queue / 2 : 1; /* follows a small quota */
    return OPTS_RUN;
}
