/*
 * ringcast-cat: a command-line client of the relay. Prints the frames it receives, one per line,
 * and publishes each line of its standard input as one frame (docs/man/ringcast-cat.1).
 *
 * One poll(2) loop over the socket, standard input and a self-pipe for SIGINT/SIGTERM. Every
 * buffer is bounded by --max-frame: a frame from the relay, a line of standard input, plus one
 * read's worth of bytes around it.
 *
 * With --tls the same loop runs over an OpenSSL 3 connection on the non-blocking socket: a read
 * may need the socket writable and a write may need it readable (SSL_ERROR_WANT_*), and decrypted
 * bytes may wait inside OpenSSL where poll(2) cannot see them (SSL_pending).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ringcast/alloc.h"
#include "ringcast/netaddr.h"
#include "ringcast/opts.h"

#define PROG "ringcast-cat"
#define AUTH_ENV "RINGCAST_AUTH"
#define DEFAULT_MAX_FRAME (1u << 20) /* the relay's default --max-frame */
#define MAX_MAX_FRAME (1ull << 30)   /* the relay's own upper bound */
#define IO_CHUNK (64u << 10)         /* one read from the socket or standard input */
#define SENDQ_HIGH (256u << 10)      /* standard input waits while this much is unsent */
#define READS_PER_WAKE 16            /* socket reads per poll, so standard input gets its turn */
#define HANDSHAKE_MS 10000           /* a TLS handshake that takes longer is not coming */

static const char usage_text[] =
    "Usage: ringcast-cat [OPTIONS] HOST:PORT\n"
    "Connects to a ringcast relay, prints every frame it receives on a line of its own, and\n"
    "publishes each line of standard input as one frame. HOST is an IPv4 or IPv6 literal\n"
    "(IPv6 in brackets: [::1]:5000); host names are not resolved.\n"
    "\n"
    "  --framing line|len32    the relay's framing (line)\n"
    "  --auth TOKEN            send 'AUTH TOKEN' as the first frame (env RINGCAST_AUTH;\n"
    "                          --auth wins)\n"
    "  --sub-only              never read standard input, only print what arrives\n"
    "  --pub-only              publish standard input, discard what arrives, and exit once the\n"
    "                          relay has taken every line\n"
    "  --max-frame B           longest frame, received or sent: a line with its '\\n', a len32\n"
    "                          payload (1M, the relay's default; K/M/G suffixes)\n"
    "  --tls                   connect with TLS (1.2 or newer), verifying the relay's\n"
    "                          certificate against the system's CAs and HOST\n"
    "  --ca FILE               trust the CA certificates of FILE (PEM) instead of the system's\n"
    "  --servername NAME       check the certificate for NAME instead of HOST, and send it\n"
    "                          as the TLS server name (SNI)\n"
    "  --insecure              do not verify the relay's certificate: for testing only\n"
    "  --cert FILE             present the client certificate of FILE (PEM, with its chain)\n"
    "                          to a relay that asks for one; needs --key\n"
    "  --key FILE              the client certificate's private key (PEM, unencrypted)\n"
    "  -h, --help              show this help\n"
    "  --version               show the version\n"
    "\n"
    "Exit status: 0 after SIGINT/SIGTERM, or when --pub-only has sent everything; 1 when the\n"
    "connection fails or ends (TLS: the handshake or the certificate check fails); 2 for bad\n"
    "usage.\n";

struct cat_opts {
    union netaddr addr;
    socklen_t addr_len;
    char where[NETADDR_STRLEN]; /* the address as messages show it */
    enum framing framing;
    const char *auth; /* NULL: no AUTH frame */
    bool sub_only, pub_only;
    uint64_t max_frame;
    /* TLS (--tls): the files are NULL when not given. */
    bool tls, insecure;
    const char *ca, *cert, *key;
    const char *servername;      /* NULL: HOST */
    char host[INET6_ADDRSTRLEN]; /* HOST without brackets or port: what the certificate names */
};

/* ===== small helpers ===== */

static void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void die(int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, PROG ": %s\n", msg);
    exit(status);
}

/* Usage errors quote what the user typed: a control character in it would break the one-line
 * message, so each becomes '?'. */
static const char *printable(const char *s, char *buf, size_t cap)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    buf[i] = '\0';
    return buf;
}

#define USAGE(...) die(2, __VA_ARGS__)
#define HINT " (see " PROG " --help)"

/* A byte buffer: data[start, end) is live, cap bytes allocated, never more than limit. */
struct buf {
    uint8_t *data;
    size_t start, end, cap, limit;
};

static size_t buf_len(const struct buf *b)
{
    return b->end - b->start;
}

/* Makes room for @n more bytes at the end, moving the live bytes to the front and growing up to
 * the limit. False when @n does not fit under it. */
static bool buf_reserve(struct buf *b, size_t n)
{
    if (b->cap - b->end >= n)
        return true;
    size_t live = buf_len(b);
    if (b->start) {
        memmove(b->data, b->data + b->start, live);
        b->start = 0;
        b->end = live;
        if (b->cap - live >= n)
            return true;
    }
    if (live + n > b->limit)
        return false;
    size_t cap = b->cap ? b->cap : IO_CHUNK;
    while (cap < live + n)
        cap *= 2;
    if (cap > b->limit)
        cap = b->limit;
    uint8_t *p = rc_realloc(b->data, cap);
    if (!p)
        die(1, "out of memory (%zu bytes)", cap);
    b->data = p;
    b->cap = cap;
    return true;
}

static void buf_append(struct buf *b, const void *p, size_t n)
{
    if (!n)
        return;
    if (!buf_reserve(b, n))
        die(1, "internal error: buffer limit");
    memcpy(b->data + b->end, p, n);
    b->end += n;
}

static void buf_consume(struct buf *b, size_t n)
{
    b->start += n;
    if (b->start == b->end)
        b->start = b->end = 0;
}

/* ===== options ===== */

enum {
    OPT_FRAMING = 256,
    OPT_AUTH,
    OPT_SUB_ONLY,
    OPT_PUB_ONLY,
    OPT_MAX_FRAME,
    OPT_VERSION,
    OPT_TLS,
    OPT_CA,
    OPT_SERVERNAME,
    OPT_INSECURE,
    OPT_CERT,
    OPT_KEY,
};

static const struct option long_options[] = {
    {"framing", required_argument, NULL, OPT_FRAMING},
    {"auth", required_argument, NULL, OPT_AUTH},
    {"sub-only", no_argument, NULL, OPT_SUB_ONLY},
    {"pub-only", no_argument, NULL, OPT_PUB_ONLY},
    {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
    {"tls", no_argument, NULL, OPT_TLS},
    {"ca", required_argument, NULL, OPT_CA},
    {"servername", required_argument, NULL, OPT_SERVERNAME},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* The token is a secret: messages name where it came from, never what it is. */
static void check_token(const struct cat_opts *o, const char *what)
{
    if (!*o->auth)
        USAGE("%s: empty token" HINT, what);
    if (strchr(o->auth, '\n'))
        USAGE("%s: the token must not contain a newline" HINT, what);
    /* The relay's rule (auth.h): anything else could never match a token of its file. */
    size_t n = strlen(o->auth);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)o->auth[i] <= 0x20 || (unsigned char)o->auth[i] >= 0x7f || n > 256)
            USAGE("%s: a token is 1-256 bytes of printable ASCII without spaces" HINT, what);
    /* "AUTH " + token, plus the '\n' that a line counts. */
    size_t frame = 5 + strlen(o->auth) + (o->framing == FRAMING_LINE);
    if (frame > o->max_frame)
        USAGE("%s: the AUTH frame (%zu bytes) is longer than --max-frame (%llu)" HINT, what, frame,
              (unsigned long long)o->max_frame);
}

/* The TLS options make sense only with --tls, and a client certificate only with its key. */
static void check_tls_opts(const struct cat_opts *o)
{
    const struct {
        const char *name;
        bool given;
    } needs_tls[] = {
        {"--ca", o->ca},
        {"--servername", o->servername},
        {"--insecure", o->insecure},
        {"--cert", o->cert},
        {"--key", o->key},
    };
    for (size_t i = 0; i < sizeof(needs_tls) / sizeof(needs_tls[0]); i++)
        if (needs_tls[i].given && !o->tls)
            USAGE("%s needs --tls" HINT, needs_tls[i].name);
    const struct {
        const char *name, *value;
    } files[] = {{"--ca", o->ca}, {"--cert", o->cert}, {"--key", o->key}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (files[i].value && !*files[i].value)
            USAGE("%s: empty file name" HINT, files[i].name);
    if (o->cert && !o->key)
        USAGE("--cert needs --key, the certificate's private key" HINT);
    if (o->key && !o->cert)
        USAGE("--key needs --cert, the certificate it belongs to" HINT);
    if (o->insecure && o->ca)
        USAGE("--insecure and --ca exclude each other: --insecure verifies nothing" HINT);
    if (o->servername) {
        char shown[128];
        size_t n = strlen(o->servername);
        bool ok = n >= 1 && n <= 253;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)o->servername[i] > 0x20 && (unsigned char)o->servername[i] < 0x7f;
        if (!ok)
            USAGE("invalid --servername '%s': expected a host name such as relay.example.com or an "
                  "IP address" HINT,
                  printable(o->servername, shown, sizeof(shown)));
    }
}

/* The usual slips in HOST:PORT, named more precisely than "not HOST:PORT"; NULL: none. */
static const char *target_problem(const char *t)
{
    static const char missing[] = "missing :PORT, such as 127.0.0.1:5000 or [::1]:5000";
    if (t[0] == '[') {
        const char *rb = strchr(t, ']');
        if (rb && rb[1] == '\0')
            return missing;
    } else {
        const char *c1 = strchr(t, ':');
        if (!c1)
            return missing;
        if (strchr(c1 + 1, ':'))
            return "an IPv6 host goes in brackets, with its port: [::1]:5000";
    }
    const char *c = strrchr(t, ':');
    return c && c[1] == '\0' ? missing : NULL;
}

static void parse_args(struct cat_opts *o, int argc, char **argv)
{
    char shown[128];
    const char *auth_flag = NULL;
    memset(o, 0, sizeof(*o));
    o->framing = FRAMING_LINE;
    o->max_frame = DEFAULT_MAX_FRAME;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        switch (c) {
        case OPT_FRAMING:
            if (!strcmp(optarg, "line"))
                o->framing = FRAMING_LINE;
            else if (!strcmp(optarg, "len32"))
                o->framing = FRAMING_LEN32;
            else
                USAGE("invalid --framing '%s': expected line or len32" HINT,
                      printable(optarg, shown, sizeof(shown)));
            break;
        case OPT_AUTH:
            auth_flag = optarg;
            break;
        case OPT_SUB_ONLY:
            o->sub_only = true;
            break;
        case OPT_PUB_ONLY:
            o->pub_only = true;
            break;
        case OPT_MAX_FRAME:
            if (opts_parse_size(optarg, &o->max_frame) < 0 || o->max_frame < 1 ||
                o->max_frame > MAX_MAX_FRAME)
                USAGE("invalid --max-frame '%s': expected a byte size from 1 to 1G, such as "
                      "4096, 64K or 8M" HINT,
                      printable(optarg, shown, sizeof(shown)));
            break;
        case OPT_TLS:
            o->tls = true;
            break;
        case OPT_CA:
            o->ca = optarg;
            break;
        case OPT_SERVERNAME:
            o->servername = optarg;
            break;
        case OPT_INSECURE:
            o->insecure = true;
            break;
        case OPT_CERT:
            o->cert = optarg;
            break;
        case OPT_KEY:
            o->key = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        case OPT_VERSION:
            printf(PROG " %s\n", RINGCAST_VERSION);
            exit(0);
        case ':':
            USAGE("option '%s' needs a value" HINT,
                  printable(argv[optind - 1], shown, sizeof(shown)));
        default:
            if (optopt > 0 && optopt < 256)
                USAGE("unknown option '-%c'" HINT, optopt);
            USAGE("unknown option '%s'" HINT, printable(argv[optind - 1], shown, sizeof(shown)));
        }
    }
    if (o->sub_only && o->pub_only)
        USAGE("--sub-only and --pub-only exclude each other" HINT);
    check_tls_opts(o);
    if (optind >= argc)
        USAGE("missing HOST:PORT, such as 127.0.0.1:5000 or [::1]:5000" HINT);
    if (optind + 1 < argc)
        USAGE("unexpected argument '%s'" HINT, printable(argv[optind + 1], shown, sizeof(shown)));
    const char *target = argv[optind];
    const char *why = target_problem(target);
    if (why)
        USAGE("'%s': %s" HINT, printable(target, shown, sizeof(shown)), why);
    if (netaddr_parse_hostport(target, &o->addr, &o->addr_len) < 0)
        USAGE("'%s' is not HOST:PORT with an IPv4 or IPv6 literal host, such as 127.0.0.1:5000 "
              "or [::1]:5000; host names are not resolved" HINT,
              printable(target, shown, sizeof(shown)));
    if (ntohs(o->addr.sa.sa_family == AF_INET ? o->addr.v4.sin_port : o->addr.v6.sin6_port) == 0)
        USAGE("'%s': port 0 cannot be connected to" HINT, printable(target, shown, sizeof(shown)));
    netaddr_format(&o->addr, o->where, sizeof(o->where));
    if (o->addr.sa.sa_family == AF_INET)
        inet_ntop(AF_INET, &o->addr.v4.sin_addr, o->host, sizeof(o->host));
    else
        inet_ntop(AF_INET6, &o->addr.v6.sin6_addr, o->host, sizeof(o->host));

    const char *env = getenv(AUTH_ENV);
    if (auth_flag) {
        o->auth = auth_flag;
        check_token(o, "--auth");
    } else if (env && *env) {
        o->auth = env;
        check_token(o, AUTH_ENV);
    }
}

/* ===== signals: a self-pipe the loop polls ===== */

static volatile sig_atomic_t stop_signal;
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    stop_signal = sig;
    ssize_t w = write(sig_pipe[1], "x", 1);
    (void)w;
    errno = saved;
}

static void signals_setup(void)
{
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        die(1, "pipe: %s", strerror(errno));
    /* No SA_RESTART: a blocked connect or write to standard output returns EINTR, so Ctrl-C
     * works even while the reader of our output is stuck. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* Like cat(1): a reader that goes away (| head) ends us quietly. The socket uses
     * MSG_NOSIGNAL, so only standard output can raise it. */
    signal(SIGPIPE, SIG_DFL);
}

/* ===== standard output ===== */

static struct buf out = {.limit = IO_CHUNK};
static bool out_live; /* a terminal, pipe or socket reads us: write each frame as it completes */

static void write_all(const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            if (stop_signal)
                exit(0); /* the user gave up on the rest */
        } else if (w < 0 && errno == EAGAIN) {
            /* Someone left our standard output non-blocking: wait for it. */
            struct pollfd p1 = {.fd = STDOUT_FILENO, .events = POLLOUT};
            poll(&p1, 1, -1);
        } else {
            die(1, "standard output: %s", w < 0 ? strerror(errno) : "write returned 0");
        }
    }
}

static void out_flush(void)
{
    if (!buf_len(&out))
        return;
    write_all(out.data + out.start, buf_len(&out));
    out.start = out.end = 0;
}

static void out_put(const void *p, size_t n)
{
    if (out.limit - buf_len(&out) < n)
        out_flush();
    if (n >= out.limit) {
        write_all(p, n);
        return;
    }
    buf_append(&out, p, n);
}

/* ===== the connection ===== */

struct cat {
    struct cat_opts o;
    int fd;
    struct buf rx;    /* bytes from the relay not yet printed (an incomplete frame) */
    size_t scanned;   /* line framing: rx bytes already known to hold no '\n' */
    struct buf line;  /* standard input not yet framed (an incomplete line) */
    struct buf sendq; /* frames not yet sent */
    unsigned long lineno;
    bool stdin_open;   /* standard input is still read */
    bool shut;         /* we sent our FIN and wait for the relay's */
    int finish_status; /* exit status once the relay has closed after our FIN */
    /* TLS: NULL without --tls. */
    SSL_CTX *ctx;
    SSL *ssl;
    bool read_wants_write; /* SSL_read stopped until the socket is writable */
    bool write_wants_read; /* SSL_write stopped until the socket is readable */
    bool shut_wants_write; /* our close_notify waits for room in the socket */
    bool sock_eof;         /* the socket under TLS read EOF */
    int sock_errno;        /* its last error other than EAGAIN/EINTR, 0: none */
};

static void relay_closed(struct cat *c, bool reset) __attribute__((noreturn));

/* ===== TLS ===== */

/*
 * The socket as OpenSSL sees it. OpenSSL's own socket BIO writes with write(2), so a relay that
 * reset the connection would raise SIGPIPE, which ends us silently (we keep it for standard
 * output); send(MSG_NOSIGNAL) makes it an error with a message instead. It also records EOF and
 * the error, which tell a closed or reset connection from a TLS failure.
 */
static int sock_bio_write(BIO *b, const char *p, int n)
{
    struct cat *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t w = send(c->fd, p, (size_t)n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
        BIO_set_retry_write(b);
    else if (w < 0)
        c->sock_errno = errno;
    return (int)w;
}

static int sock_bio_read(BIO *b, char *p, int n)
{
    struct cat *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r = recv(c->fd, p, (size_t)n, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        BIO_set_retry_read(b);
    else if (r < 0)
        c->sock_errno = errno;
    else if (r == 0)
        c->sock_eof = true;
    return (int)r;
}

static long sock_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct cat *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* nothing is buffered here */
    case BIO_CTRL_EOF:
        return c->sock_eof;
    default:
        return 0;
    }
}

static BIO *sock_bio_new(struct cat *c)
{
    static BIO_METHOD *m;
    if (!m) {
        m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                         PROG " socket");
        if (!m || !BIO_meth_set_write(m, sock_bio_write) || !BIO_meth_set_read(m, sock_bio_read) ||
            !BIO_meth_set_ctrl(m, sock_bio_ctrl))
            die(1, "TLS: cannot set up the socket BIO");
    }
    BIO *b = BIO_new(m);
    if (!b)
        die(1, "TLS: out of memory");
    BIO_set_data(b, c);
    BIO_set_init(b, 1);
    return b;
}

/* The reason of OpenSSL's first queued error, for a message: never key material. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

/* Dies with OpenSSL's first queued error: an alert means the relay refused us, said as such. */
static void die_ssl(const struct cat *c, const char *what) __attribute__((noreturn));

static void die_ssl(const struct cat *c, const char *what)
{
    int reason = ERR_GET_REASON(ERR_peek_error());
    if (reason > SSL_AD_REASON_OFFSET) {
        /* TLS 1.3 names the missing client certificate; TLS 1.2 says only "handshake failure". */
        const char *hint = "";
        if (!c->o.cert && (reason == SSL_AD_REASON_OFFSET + TLS13_AD_CERTIFICATE_REQUIRED ||
                           reason == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE))
            hint = "; it may want a client certificate (--cert and --key)";
        die(1, "%s: %s failed: the relay refused the TLS session (%s)%s", c->o.where, what,
            ssl_reason(), hint);
    }
    die(1, "%s: %s failed: %s", c->o.where, what, ssl_reason());
}

/* Encrypted keys are not supported: OpenSSL must fail rather than prompt on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* A file named on the command line must be readable: say so with the system's words, which say
 * more than OpenSSL's "system lib". */
static void check_readable(const char *opt, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die(1, "%s %s: %s", opt, path, strerror(errno));
    fclose(f);
}

static bool is_ip_literal(const char *s)
{
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* Builds the TLS context from the options: failures to load a file exit 1 at once, before
 * connecting. */
static void tls_setup(struct cat *c)
{
    const struct cat_opts *o = &c->o;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        die(1, "TLS: cannot create a context: %s", ssl_reason());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* send_some() passes the start of sendq, which later appends may move or lengthen; a
     * partial write frees the room of the records already sent. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    if (!o->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (o->ca) {
            check_readable("--ca", o->ca);
            if (!SSL_CTX_load_verify_file(ctx, o->ca))
                die(1, "--ca %s: no CA certificate could be loaded from it: %s", o->ca,
                    ssl_reason());
        } else if (!SSL_CTX_set_default_verify_paths(ctx)) {
            die(1, "TLS: cannot load the system's CA certificates: %s", ssl_reason());
        }
    }
    if (o->cert) {
        check_readable("--cert", o->cert);
        check_readable("--key", o->key);
        if (!SSL_CTX_use_certificate_chain_file(ctx, o->cert))
            die(1, "--cert %s: cannot load a PEM certificate from it: %s", o->cert, ssl_reason());
        if (!SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM)) {
            if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH)
                die(1, "--key %s does not match the certificate of --cert %s", o->key, o->cert);
            die(1, "--key %s: cannot load an unencrypted PEM private key from it: %s", o->key,
                ssl_reason());
        }
        if (!SSL_CTX_check_private_key(ctx))
            die(1, "--key %s does not match the certificate of --cert %s", o->key, o->cert);
    }
    c->ctx = ctx;
}

/* Wraps the connected socket in TLS, with the name the relay's certificate must carry. */
static void tls_attach(struct cat *c)
{
    const struct cat_opts *o = &c->o;
    SSL *ssl = SSL_new(c->ctx);
    if (!ssl)
        die(1, "TLS: out of memory");
    const char *name = o->servername ? o->servername : o->host;
    bool ip = is_ip_literal(name);
    if (!o->insecure) {
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
                    : SSL_set1_host(ssl, name);
        if (!ok)
            die(1, "TLS: cannot check the certificate for '%s': %s", name, ssl_reason());
    }
    /* SNI carries host names only (RFC 6066): HOST, an IP literal, is never sent. */
    if (!ip && !SSL_set_tlsext_host_name(ssl, name))
        die(1, "TLS: cannot send the server name '%s': %s", name, ssl_reason());
    BIO *b = sock_bio_new(c);
    SSL_set_bio(ssl, b, b);
    c->ssl = ssl;
}

/* Ends us after an SSL_* call failed with @err (SSL_get_error): a close or a reset as without
 * TLS, anything else with OpenSSL's reason. */
static void tls_failed(struct cat *c, int err, const char *during) __attribute__((noreturn));

static void tls_failed(struct cat *c, int err, const char *during)
{
    out_flush();
    if (err == SSL_ERROR_ZERO_RETURN) /* the relay's close_notify */
        relay_closed(c, false);
    if (err == SSL_ERROR_SSL &&
        ERR_GET_REASON(ERR_peek_error()) != SSL_R_UNEXPECTED_EOF_WHILE_READING)
        die_ssl(c, during);
    if (c->sock_errno == ECONNRESET || c->sock_errno == EPIPE)
        relay_closed(c, true);
    if (c->sock_errno)
        die(1, "%s: %s: %s", c->o.where, during, strerror(c->sock_errno));
    /* EOF without the relay's close_notify: the relay closes TCP as it does without TLS. */
    relay_closed(c, false);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Why the handshake failed, in one line: the certificate check first, it says most. */
static void handshake_failed(struct cat *c, int err) __attribute__((noreturn));

static void handshake_failed(struct cat *c, int err)
{
    long v = SSL_get_verify_result(c->ssl);
    if (err == SSL_ERROR_SSL && v != X509_V_OK) {
        const char *hint = "";
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            hint = c->o.servername ? " (it is not for --servername)"
                                   : " (it is not for HOST; --servername NAME checks another name)";
        else if (v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                 v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
                 v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN)
            hint = c->o.ca ? " (not issued by a CA of --ca)"
                           : " (not issued by a CA the system trusts; --ca FILE names others)";
        die(1, "%s: TLS handshake failed: the relay's certificate does not verify: %s%s",
            c->o.where, X509_verify_cert_error_string(v), hint);
    }
    if (err == SSL_ERROR_SSL &&
        ERR_GET_REASON(ERR_peek_error()) != SSL_R_UNEXPECTED_EOF_WHILE_READING)
        die_ssl(c, "TLS handshake");
    if (c->sock_errno && c->sock_errno != ECONNRESET && c->sock_errno != EPIPE)
        die(1, "%s: TLS handshake failed: %s", c->o.where, strerror(c->sock_errno));
    /* A relay with --max-tls-handshakes running closes new TLS connections at once. */
    die(1,
        "%s: TLS handshake failed: the relay %s the connection (is it a TLS listener? a busy one "
        "closes new connections at once)",
        c->o.where, c->sock_errno ? "reset" : "closed");
}

/* The handshake, before anything else is sent, within HANDSHAKE_MS: a plain listener would
 * take the ClientHello as data and never answer. */
static void tls_handshake(struct cat *c)
{
    int64_t deadline = now_ms() + HANDSHAKE_MS;
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return;
        int err = SSL_get_error(c->ssl, r);
        short ev = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!ev)
            handshake_failed(c, err);
        int64_t left = deadline - now_ms();
        if (left <= 0)
            die(1, "%s: TLS handshake failed: no answer within %d s (is it a TLS listener?)",
                c->o.where, HANDSHAKE_MS / 1000);
        struct pollfd pfd[2] = {{.fd = sig_pipe[0], .events = POLLIN}, {.fd = c->fd, .events = ev}};
        if (poll(pfd, 2, (int)left) < 0 && errno != EINTR)
            die(1, "poll: %s", strerror(errno));
        if (stop_signal)
            exit(0);
    }
}

/* One SSL_read: bytes, or -1 when it must wait (read_wants_write says for what). Ends us on a
 * close or a failure. */
static ssize_t tls_read(struct cat *c, void *dst, size_t cap)
{
    c->read_wants_write = false;
    size_t got;
    ERR_clear_error();
    if (SSL_read_ex(c->ssl, dst, cap, &got))
        return (ssize_t)got;
    int err = SSL_get_error(c->ssl, 0);
    if (err == SSL_ERROR_WANT_READ)
        return -1;
    if (err == SSL_ERROR_WANT_WRITE) {
        c->read_wants_write = true;
        return -1;
    }
    tls_failed(c, err, "TLS receive");
}

/* Queues one frame whose payload is @a then @b (either may be empty). */
static void frame_out(struct cat *c, const void *a, size_t an, const void *b, size_t bn)
{
    size_t n = an + bn;
    if (c->o.framing == FRAMING_LEN32) {
        uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
        buf_append(&c->sendq, hdr, sizeof(hdr));
    }
    if (an)
        buf_append(&c->sendq, a, an);
    if (bn)
        buf_append(&c->sendq, b, bn);
    if (c->o.framing == FRAMING_LINE)
        buf_append(&c->sendq, "\n", 1);
}

static void send_some(struct cat *c)
{
    while (c->ssl && buf_len(&c->sendq)) {
        c->write_wants_read = false;
        size_t n;
        ERR_clear_error();
        if (SSL_write_ex(c->ssl, c->sendq.data + c->sendq.start, buf_len(&c->sendq), &n)) {
            buf_consume(&c->sendq, n);
            continue;
        }
        int err = SSL_get_error(c->ssl, 0);
        if (err == SSL_ERROR_WANT_WRITE)
            return;
        if (err == SSL_ERROR_WANT_READ) {
            c->write_wants_read = true;
            return;
        }
        tls_failed(c, err, "TLS send");
    }
    while (buf_len(&c->sendq)) {
        ssize_t n = send(c->fd, c->sendq.data + c->sendq.start, buf_len(&c->sendq), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&c->sendq, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        out_flush();
        if (errno == ECONNRESET || errno == EPIPE)
            die(1, "%s: connection reset by the relay", c->o.where);
        die(1, "%s: send: %s", c->o.where, strerror(errno));
    }
}

/* The relay closes a client when it sees the client's FIN (PROTOCOL.md), after relaying the
 * frames before it: the FIN goes out only once every frame has been written to the socket, and
 * the relay's own FIN then proves that it took them all. SIOCOUTQ would only prove that its
 * kernel acknowledged them, and closing at once could turn into a reset that drops them. */
static void finish(struct cat *c, int status)
{
    c->stdin_open = false;
    c->finish_status = status;
}

/* One line of standard input, without its '\n'. */
static void publish_line(struct cat *c, const uint8_t *p, size_t n)
{
    c->lineno++;
    size_t frame = n + (c->o.framing == FRAMING_LINE);
    if (frame > c->o.max_frame) {
        fprintf(stderr,
                PROG ": standard input line %lu is %zu bytes, longer than --max-frame (%llu): "
                     "not sent; stopping after the lines before it\n",
                c->lineno, frame, (unsigned long long)c->o.max_frame);
        finish(c, 1);
        return;
    }
    frame_out(c, p, n, NULL, 0);
}

static void read_stdin(struct cat *c)
{
    /* A line may be up to --max-frame long; one more read's worth fits behind it. */
    if (!buf_reserve(&c->line, IO_CHUNK))
        die(1, "internal error: line buffer");
    ssize_t n = read(STDIN_FILENO, c->line.data + c->line.end, IO_CHUNK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n < 0)
        die(1, "standard input: %s", strerror(errno));
    if (n == 0) {
        if (buf_len(&c->line)) /* a last line without its newline is a line too */
            publish_line(c, c->line.data + c->line.start, buf_len(&c->line));
        c->line.start = c->line.end = 0;
        finish(c, 0);
        return;
    }
    size_t scan_from = c->line.end;
    c->line.end += (size_t)n;
    for (;;) {
        uint8_t *nl = memchr(c->line.data + scan_from, '\n', c->line.end - scan_from);
        if (!nl)
            break;
        const uint8_t *start = c->line.data + c->line.start;
        publish_line(c, start, (size_t)(nl - start));
        if (!c->stdin_open)
            return;
        buf_consume(&c->line, (size_t)(nl + 1 - start));
        scan_from = c->line.start;
    }
    /* An incomplete line that is already too long will never fit. */
    if (buf_len(&c->line) + (c->o.framing == FRAMING_LINE) > c->o.max_frame)
        publish_line(c, c->line.data + c->line.start, buf_len(&c->line));
}

/* A frame over --max-frame cannot be printed whole: stop rather than buffer without bound. */
static void frame_too_long(struct cat *c, uint64_t len32)
{
    out_flush();
    if (c->o.framing == FRAMING_LINE)
        die(1, "%s: the relay sent a line longer than --max-frame (%llu bytes)", c->o.where,
            (unsigned long long)c->o.max_frame);
    die(1, "%s: the relay sent a len32 frame of %llu bytes, over --max-frame (%llu)", c->o.where,
        (unsigned long long)len32, (unsigned long long)c->o.max_frame);
}

/* Prints every complete frame in rx and keeps the incomplete one. */
static void print_frames(struct cat *c)
{
    struct buf *b = &c->rx;
    if (c->o.framing == FRAMING_LINE) {
        /* Lines go out as they came, each with its '\n', as one write. */
        uint8_t *p = b->data + b->start, *end = b->data + b->end;
        uint8_t *line = p, *nl;
        for (uint8_t *q = p + c->scanned; (nl = memchr(q, '\n', (size_t)(end - q))); q = line) {
            if ((uint64_t)(nl + 1 - line) > c->o.max_frame) {
                out_put(p, (size_t)(line - p)); /* the lines before it */
                frame_too_long(c, 0);
            }
            line = nl + 1;
        }
        out_put(p, (size_t)(line - p));
        buf_consume(b, (size_t)(line - p));
        c->scanned = buf_len(b);
        if (c->scanned >= c->o.max_frame) /* no '\n' yet, and it would need one more byte */
            frame_too_long(c, 0);
        return;
    }
    while (buf_len(b) >= 4) {
        const uint8_t *h = b->data + b->start;
        uint64_t n = (uint64_t)h[0] << 24 | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 8 | h[3];
        if (n > c->o.max_frame)
            frame_too_long(c, n);
        if (buf_len(b) < 4 + n)
            return;
        out_put(h + 4, (size_t)n);
        out_put("\n", 1);
        buf_consume(b, 4 + (size_t)n);
    }
}

static void relay_closed(struct cat *c, bool reset)
{
    out_flush();
    const char *how = reset ? "connection reset by the relay" : "the relay closed the connection";
    if (c->shut && !reset)
        exit(c->finish_status); /* its FIN answers ours: it took every frame */
    if (c->shut || c->o.pub_only)
        die(1, "%s: %s before it took everything sent", c->o.where, how);
    if (buf_len(&c->rx))
        die(1, "%s: %s in the middle of a frame (%zu bytes dropped)", c->o.where, how,
            buf_len(&c->rx));
    die(1, "%s: %s", c->o.where, how);
}

static void read_socket(struct cat *c)
{
    static uint8_t scratch[IO_CHUNK];
    for (int i = 0; i < READS_PER_WAKE; i++) {
        uint8_t *dst = scratch;
        if (!c->o.pub_only) {
            if (!buf_reserve(&c->rx, IO_CHUNK))
                die(1, "internal error: receive buffer");
            dst = c->rx.data + c->rx.end;
        }
        ssize_t n;
        if (c->ssl) {
            n = tls_read(c, dst, IO_CHUNK);
            if (n < 0)
                break;
        } else {
            n = recv(c->fd, dst, IO_CHUNK, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            if (n < 0 && errno != ECONNRESET)
                die(1, "%s: recv: %s", c->o.where, strerror(errno));
            if (n <= 0)
                relay_closed(c, n < 0);
        }
        if (c->o.pub_only)
            continue; /* read only so that the relay never sees a stuck reader */
        c->rx.end += (size_t)n;
        print_frames(c);
        if (out_live)
            out_flush();
        /* A TLS read returns one record (16 KiB at most): only WANT_READ says the socket is
         * empty. */
        if (!c->ssl && (size_t)n < IO_CHUNK)
            break;
    }
}

static int connect_to(const struct cat_opts *o)
{
    int fd = socket(o->addr.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die(1, "socket: %s", strerror(errno));
    if (connect(fd, &o->addr.sa, o->addr_len) < 0) {
        if (errno == EINTR && stop_signal)
            exit(0);
        die(1, "cannot connect to %s: %s", o->where, strerror(errno));
    }
    /* We batch what we send ourselves; Nagle would only delay a typed line. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static bool stdout_is_live(void)
{
    struct stat st;
    if (fstat(STDOUT_FILENO, &st) < 0)
        return true;
    return isatty(STDOUT_FILENO) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode);
}

/* Sends our FIN (with TLS, after our close_notify); until it could, shut_wants_write says why. */
static void close_sending(struct cat *c)
{
    if (c->ssl) {
        c->shut_wants_write = false;
        ERR_clear_error();
        int r = SSL_shutdown(c->ssl);
        if (r < 0) {
            int err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_WRITE) {
                c->shut_wants_write = true;
                return;
            }
            if (err != SSL_ERROR_WANT_READ)
                tls_failed(c, err, "TLS close");
        }
    }
    shutdown(c->fd, SHUT_WR);
    c->shut = true;
}

static void run(struct cat *c)
{
    for (;;) {
        if (stop_signal) {
            out_flush();
            exit(0);
        }
        if (!c->stdin_open && !c->shut && !buf_len(&c->sendq) &&
            (c->o.pub_only || c->finish_status))
            close_sending(c);
        bool want_stdin = c->stdin_open && buf_len(&c->sendq) < SENDQ_HIGH;
        /* Decrypted bytes inside OpenSSL: poll(2) cannot see them, so it must not wait. */
        bool tls_ready = c->ssl && SSL_pending(c->ssl) > 0;
        bool read_wants_write = c->read_wants_write, write_wants_read = c->write_wants_read;
        bool want_out =
            (buf_len(&c->sendq) && !write_wants_read) || read_wants_write || c->shut_wants_write;
        struct pollfd pfd[3] = {
            {.fd = sig_pipe[0], .events = POLLIN},
            {.fd = c->fd, .events = POLLIN | (want_out ? POLLOUT : 0)},
            {.fd = want_stdin ? STDIN_FILENO : -1, .events = POLLIN},
        };
        /* Nothing waits in our buffer while we wait: a file gets it now too. */
        if (buf_len(&out)) {
            if (poll(pfd, 3, 0) == 0 && !tls_ready)
                out_flush();
        }
        if (poll(pfd, 3, tls_ready ? 0 : -1) < 0) {
            if (errno == EINTR)
                continue;
            die(1, "poll: %s", strerror(errno));
        }
        if (pfd[0].revents)
            continue; /* stop_signal is set */
        bool readable = pfd[1].revents & (POLLIN | POLLHUP | POLLERR);
        bool writable = pfd[1].revents & (POLLOUT | POLLERR);
        if (readable || tls_ready || (writable && read_wants_write))
            read_socket(c);
        if (writable || (readable && write_wants_read))
            send_some(c);
        if (pfd[2].revents && c->stdin_open) {
            read_stdin(c);
            send_some(c);
        }
    }
}

int main(int argc, char **argv)
{
    static struct cat c;
    parse_args(&c.o, argc, argv);
    signals_setup();
    out_live = stdout_is_live();
    if (c.o.tls)
        tls_setup(&c); /* a file that cannot be used fails before connecting */
    c.fd = connect_to(&c.o);
    if (c.o.tls) {
        tls_attach(&c);
        tls_handshake(&c);
    }
    c.stdin_open = !c.o.sub_only;
    /* An incomplete frame is at most --max-frame (plus a len32 header); one read comes on top. */
    c.rx.limit = c.line.limit = (size_t)c.o.max_frame + 4 + IO_CHUNK;
    /* Standard input is read while less than SENDQ_HIGH waits; one read then adds the line it
     * completes and the frames of IO_CHUNK bytes (4 per byte at worst: empty len32 frames). The
     * AUTH frame fits in the same room. */
    c.sendq.limit = SENDQ_HIGH + (size_t)c.o.max_frame + 4 + 4 * IO_CHUNK;
    if (c.o.auth) {
        /* The very first frame (with TLS, the first inside it). */
        frame_out(&c, "AUTH ", 5, c.o.auth, strlen(c.o.auth));
        send_some(&c);
    }
    /* Someone typing (the walkthrough) wants to know it worked; scripts get silence. */
    if (isatty(STDIN_FILENO) && isatty(STDERR_FILENO) && c.stdin_open)
        fprintf(stderr, PROG ": connected to %s (%s framing%s%s%s); Ctrl-C quits\n", c.o.where,
                opts_framing_name(c.o.framing), c.ssl ? ", " : "",
                c.ssl ? SSL_get_version(c.ssl) : "",
                c.ssl && c.o.insecure ? ", certificate NOT verified" : "");
    run(&c);
}
