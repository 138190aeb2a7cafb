/*
 * The PROXY protocol on a listener flagged `proxy` (--listen ADDR:PORT,proxy): through a real
 * HAProxy (send-proxy and send-proxy-v2, spawned here with a generated configuration) the relay
 * logs the client's address and port, not haproxy's own connection's, and frames flow both ways
 * through it. Headers built by hand: v1 and v2 with a chosen source address, IPv6, TLVs, a header
 * in pieces or followed by a frame in the same segment, LOCAL and UNKNOWN keeping the socket's
 * address; malformed ones closed without a "connected." line and counted; a client that sends no
 * whole header closed at --auth-timeout; --max-clients-per-ip applied to the header's address.
 *
 * Logged as "ADDR:PORT connected." once the header is read, and for a failure
 * "127.0.0.1:PORT disconnected (proxy header: REASON)." (the reason text is not asserted); the
 * failures are counted in ringcast_proxy_header_failures_total (whatever its labels: the samples
 * are summed). The tests that need haproxy skip when it is not installed (tools/deps installs it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define QUIET_MS 300 /* a negative check: passing it proves nothing, failing it is a real error */
#define FAILURES "ringcast_proxy_header_failures_total"
#define V2_SIG "\r\n\r\n\0\r\nQUIT\n"

/* ------------------------------------------------------------------ haproxy */

/* One haproxy a test started, stopped and cleaned by the teardown. */
static struct {
    pid_t pid;
    char dir[256];
} hap;

static const char *haproxy_bin(void)
{
    static const char *const where[] = {"/usr/sbin/haproxy", "/usr/bin/haproxy",
                                        "/usr/local/sbin/haproxy"};
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++)
        if (access(where[i], X_OK) == 0)
            return where[i];
    return NULL;
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail_msg("writing %s: %s", path, strerror(errno));
        text += n;
        len -= (size_t)n;
    }
    close(fd);
}

/* Whether 127.0.0.1:@port is in LISTEN state (/proc/net/tcp): waiting on it this way opens no
 * connection, which haproxy would pass on to the relay. */
static bool tcp_listening(int port)
{
    FILE *f = fopen("/proc/net/tcp", "re");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        unsigned addr, lport, st;
        if (sscanf(line, " %*d: %8x:%4x %*8x:%*4x %2x", &addr, &lport, &st) == 3)
            found = addr == 0x0100007fu && (int)lport == port && st == 0x0a;
    }
    fclose(f);
    return found;
}

/*
 * Starts haproxy in the foreground: `mode tcp`, a frontend on a free port of 127.0.0.1, one
 * server 127.0.0.1:@relay_port with @send ("send-proxy" or "send-proxy-v2"). Returns the
 * frontend's port once it listens. Skips the test when haproxy is not installed.
 */
static int haproxy_start(int relay_port, const char *send)
{
    const char *bin = haproxy_bin();
    if (!bin) {
        print_message("haproxy is not installed (tools/deps installs it): skipped\n");
        skip();
    }
    snprintf(hap.dir, sizeof(hap.dir), "%s/ringcast-test-haproxy-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(hap.dir))
        fail_msg("mkdtemp: %s", strerror(errno));
    int port = sp_free_port();
    char cfg[1024], path[320], errpath[320];
    snprintf(cfg, sizeof(cfg),
             "global\n"
             "    nbthread 1\n"
             "    maxconn 256\n"
             "defaults\n"
             "    mode tcp\n"
             "    timeout connect 5s\n"
             "    timeout client 60s\n"
             "    timeout server 60s\n"
             "frontend in\n"
             "    bind 127.0.0.1:%d\n"
             "    default_backend relay\n"
             "backend relay\n"
             "    server s1 127.0.0.1:%d %s\n",
             port, relay_port, send);
    snprintf(path, sizeof(path), "%s/haproxy.cfg", hap.dir);
    snprintf(errpath, sizeof(errpath), "%s/stderr", hap.dir);
    write_file(path, cfg);
    int errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(errfd >= 0);
    const char *argv[] = {bin, "-f", path, "-db", "-q", NULL};
    hap.pid = sp_spawn(argv, NULL, -1, errfd);
    close(errfd);
    int64_t deadline = rc_now_ms() + RC_START_TIMEOUT_MS;
    while (!tcp_listening(port)) {
        int st;
        if (waitpid(hap.pid, &st, WNOHANG) == hap.pid || sp_remaining_ms(deadline) == 0) {
            char *err = sp_slurp(errpath);
            fail_msg("haproxy did not start listening on 127.0.0.1:%d:\n%s", port, err ? err : "");
        }
        sp_nap_ms(10);
    }
    return port;
}

static void rm_dir(const char *dir)
{
    static const char *const files[] = {"haproxy.cfg", "stderr"};
    char path[320];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int teardown(void **state)
{
    if (hap.pid > 0)
        sp_stop(hap.pid);
    hap.pid = 0;
    if (hap.dir[0])
        rm_dir(hap.dir);
    hap.dir[0] = '\0';
    return rc_teardown(state);
}

/* ------------------------------------------------------------------ the relay */

/* A relay with a `proxy` listener and /metrics. */
struct psrv {
    struct rc_server *s;
    int pport; /* the proxy listener */
    int mport; /* /metrics */
};

static struct psrv start_proxy(const char *const *extra)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = "--metrics";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0,proxy";
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    struct rc_opts o = {.argv = argv};
    struct psrv p = {.s = rc_start_ex(&o)};
    p.pport = rc_listener_port(p.s, "role=both,proxy", NULL, 0, NULL, 0);
    char line[256];
    if (!rc_log_wait(p.s, 0, "Metrics at: http://127.0.0.1:", RC_WAIT_MS) ||
        !rc_log_find(p.s, 0, "Metrics at: http://127.0.0.1:", line, sizeof(line)))
        fail_msg("no \"Metrics at:\" line");
    p.mport = atoi(strstr(line, "http://127.0.0.1:") + strlen("http://127.0.0.1:"));
    return p;
}

/* GET /metrics; the body, malloc'ed (the caller frees it). */
static char *scrape(const struct psrv *p)
{
    return rc_metrics_get(p->s, p->mport);
}

/* Scrapes until the failures counted equal @want (bounded); fails with the scrape otherwise. */
static void wait_failures(const struct psrv *p, double want)
{
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    for (;;) {
        char *text = scrape(p);
        double v = rc_metrics_sum(text, FAILURES);
        if (v == want || (want == 0 && v < 0)) {
            free(text);
            return;
        }
        if (rc_now_ms() > deadline) {
            rc_dump(p->s);
            fail_msg("%s is %g, want %g:\n%s", FAILURES, v, want, text);
        }
        free(text);
        sp_nap_ms(20);
    }
}

/* A client of the proxy listener, from 127.0.0.1, not yet registered (it sends the header). */
static int proxy_client(const struct psrv *p)
{
    return rc_connect_opts(p->s, "127.0.0.1", &(struct rc_sockopts){.port = p->pport});
}

/* Waits for the line "@addr connected." (e.g. "203.0.113.7:4242"). */
static void wait_connected(const struct psrv *p, size_t mark, const char *addr)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "%s connected.", addr);
    if (!rc_log_wait(p->s, mark, needle, RC_WAIT_MS))
        fail_msg("no server log line \"%s\"", needle);
}

/* A client of the proxy listener at @host:@port that sends a v2 LOCAL header (haproxy's health
 * check), once the relay logged it with the socket's own address. */
static int local_client(const struct psrv *p, size_t mark, const char *host, int port)
{
    int fd = rc_connect_opts(p->s, host, &(struct rc_sockopts){.port = port});
    rc_send(fd, V2_SIG "\x20\x00\x00\x00", 16);
    char addr[64];
    snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, rc_port_of(fd));
    wait_connected(p, mark, addr);
    return fd;
}

/* @fd, whose header was refused: its failure line, no "connected." line, closed with nothing
 * sent. */
static void expect_refused(const struct psrv *p, size_t mark, int fd)
{
    int port = rc_port_of(fd);
    rc_wait_client_log(p->s, mark, port, "disconnected (proxy header");
    rc_expect_closed(fd);
    char needle[64];
    rc_needle(needle, sizeof(needle), port, "connected.");
    if (rc_log_count(p->s, mark, needle)) {
        rc_dump(p->s);
        fail_msg("a client whose header was refused was logged as connected (port %d)", port);
    }
}

/* Fails unless nothing at all (no byte, no EOF) is readable on @fd now and for QUIET_MS. */
static void expect_nothing(int fd, const char *who)
{
    char b[64];
    ssize_t n = rc_recv_now(fd, b, sizeof(b));
    if (n != 0)
        fail_msg("%s: %s", who, n < 0 ? "closed" : "received data");
    if (!rc_quiet(fd, QUIET_MS))
        fail_msg("%s received something", who);
}

/* Waits for a line containing @needle on stdout or stderr (warnings go to stderr). */
static void wait_out_or_err(struct rc_server *s, size_t mark, const char *needle)
{
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    while (!rc_log_count(s, mark, needle) && !rc_err_contains(s, needle)) {
        if (sp_remaining_ms(deadline) == 0) {
            rc_dump(s);
            fail_msg("no line \"%s\"", needle);
        }
        sp_nap_ms(20);
    }
}

/* A v2 PROXY TCP/IPv4 header from @src:@port to 127.0.0.1:@dport into @buf; its length (28). */
static size_t v2_ipv4(uint8_t *buf, const uint8_t src[4], uint16_t port, uint16_t dport)
{
    memcpy(buf, V2_SIG "\x21\x11\x00\x0c", 16);
    memcpy(buf + 16, src, 4);
    memcpy(buf + 20, "\x7f\x00\x00\x01", 4);
    buf[24] = (uint8_t)(port >> 8);
    buf[25] = (uint8_t)port;
    buf[26] = (uint8_t)(dport >> 8);
    buf[27] = (uint8_t)dport;
    return 28;
}

/* Sends a v1 header naming @src:@port (TCP4) on @fd. */
static void send_v1(const struct psrv *p, int fd, const char *src, int port)
{
    char h[128];
    snprintf(h, sizeof(h), "PROXY TCP4 %s 127.0.0.1 %d %d\r\n", src, port, p->pport);
    rc_send_str(fd, h);
}

/* ------------------------------------------------------------------ through haproxy */

/*
 * What haproxy sends, seen by a listener of the test's own (no relay): exactly the header the
 * unit tests hold as haproxy's, with the client's address and port, then the client's bytes.
 * This pins the configuration the tests below use and haproxy's output the parser is tested on.
 */
static void haproxy_sends_case(const char *send, bool v2)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 4), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &alen), 0);
    int front = haproxy_start(ntohs(a.sin_port), send);

    /* No relay: the port is given, so the harness connects without one. */
    int c = rc_connect_opts(NULL, "127.0.0.1", &(struct rc_sockopts){.port = front});
    rc_send_str(c, "x\n");
    struct pollfd pfd = {.fd = ls, .events = POLLIN};
    if (poll(&pfd, 1, RC_IO_MS) != 1)
        fail_msg("haproxy did not connect to its server");
    int in = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    assert_true(in >= 0);
    close(ls);
    uint8_t want[64];
    size_t n;
    int cport = rc_port_of(c);
    if (v2) {
        memcpy(want, V2_SIG "\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01", 24);
        want[24] = (uint8_t)(cport >> 8);
        want[25] = (uint8_t)cport;
        want[26] = (uint8_t)(front >> 8);
        want[27] = (uint8_t)front;
        memcpy(want + 28, "x\n", 2);
        n = 30;
    } else {
        n = (size_t)snprintf((char *)want, sizeof(want),
                             "PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\nx\n", cport, front);
    }
    rc_expect(in, want, n);
    close(in);
}

static void test_proxy_haproxy_sends_v1(void **state)
{
    (void)state;
    haproxy_sends_case("send-proxy", false);
}

static void test_proxy_haproxy_sends_v2(void **state)
{
    (void)state;
    haproxy_sends_case("send-proxy-v2", true);
}

/*
 * Two clients through haproxy (@send): each logged as 127.0.0.1 with its own port, which only the
 * header can tell (haproxy's connection to the relay has another); frames both ways between them
 * and a direct client; their disconnections logged with the same addresses; nothing counted as a
 * failure.
 */
static void haproxy_case(const char *send)
{
    struct psrv p = start_proxy(NULL);
    int front = haproxy_start(p.pport, send);
    int direct = rc_connect(p.s);

    size_t mark = rc_log_mark(p.s);
    int a = rc_connect_opts(p.s, "127.0.0.1", &(struct rc_sockopts){.port = front});
    int b = rc_connect_opts(p.s, "127.0.0.1", &(struct rc_sockopts){.port = front});
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", rc_port_of(a));
    wait_connected(&p, mark, addr);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", rc_port_of(b));
    wait_connected(&p, mark, addr);
    /* Exactly two connections came in, both through haproxy: its own ports are never logged. */
    assert_int_equal(rc_log_count(p.s, mark, " connected."), 2);

    rc_send_str(a, "through haproxy\n");
    rc_expect_str(direct, "through haproxy\n");
    rc_expect_str(b, "through haproxy\n");
    rc_send_str(direct, "back through haproxy\n");
    rc_expect_str(a, "back through haproxy\n");
    rc_expect_str(b, "back through haproxy\n");
    /* Header and frame may share a segment: a frame sent at once after connecting is relayed. */
    int c = rc_connect_opts(p.s, "127.0.0.1", &(struct rc_sockopts){.port = front});
    rc_send_str(c, "at once\n");
    rc_expect_str(direct, "at once\n");
    rc_expect_str(a, "at once\n");

    mark = rc_log_mark(p.s);
    int port = rc_close(a);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d disconnected.", port);
    if (!rc_log_wait(p.s, mark, addr, RC_WAIT_MS))
        fail_msg("no server log line \"%s\"", addr);
    wait_failures(&p, 0);
}

static void test_proxy_haproxy_v1(void **state)
{
    (void)state;
    haproxy_case("send-proxy");
}

static void test_proxy_haproxy_v2(void **state)
{
    (void)state;
    haproxy_case("send-proxy-v2");
}

/* ------------------------------------------------------------------ headers by hand */

/*
 * v1: TCP4 with a chosen address, the header and a frame in one segment; TCP6; a header sent
 * byte by byte; UNKNOWN keeps the socket's address.
 */
static void test_proxy_v1_by_hand(void **state)
{
    (void)state;
    struct psrv p = start_proxy(NULL);
    int direct = rc_connect(p.s);
    size_t mark = rc_log_mark(p.s);

    int a = proxy_client(&p);
    char h[256];
    snprintf(h, sizeof(h), "PROXY TCP4 203.0.113.7 127.0.0.1 4242 %d\r\nfirst frame\n", p.pport);
    rc_send_str(a, h);
    wait_connected(&p, mark, "203.0.113.7:4242");
    rc_expect_str(direct, "first frame\n");

    int b = proxy_client(&p);
    snprintf(h, sizeof(h), "PROXY TCP6 2001:db8::7 ::1 4343 %d\r\n", p.pport);
    rc_send_str(b, h);
    wait_connected(&p, mark, "[2001:db8::7]:4343");

    /* In pieces: the relay waits for the whole header. */
    int c = proxy_client(&p);
    snprintf(h, sizeof(h), "PROXY TCP4 198.51.100.9 127.0.0.1 5454 %d\r\n", p.pport);
    for (size_t i = 0; h[i]; i++) {
        rc_send(c, h + i, 1);
        sp_nap_ms(2);
    }
    wait_connected(&p, mark, "198.51.100.9:5454");
    rc_send_str(c, "pieces\n");
    rc_expect_str(direct, "pieces\n");
    rc_expect_str(a, "pieces\n");
    rc_expect_str(b, "pieces\n");

    /* UNKNOWN: the socket's own address (127.0.0.1 and the client's port). */
    int d = proxy_client(&p);
    rc_send_str(d, "PROXY UNKNOWN\r\n");
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", rc_port_of(d));
    wait_connected(&p, mark, addr);
    int e = proxy_client(&p);
    rc_send_str(e, "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", rc_port_of(e));
    wait_connected(&p, mark, addr);
    rc_send_str(direct, "to all\n");
    int all[] = {a, b, c, d, e};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        rc_expect_str(all[i], "to all\n");

    /* The disconnection is logged with the header's address. */
    mark = rc_log_mark(p.s);
    rc_close(a);
    if (!rc_log_wait(p.s, mark, "203.0.113.7:4242 disconnected.", RC_WAIT_MS))
        fail_msg("no server log line \"203.0.113.7:4242 disconnected.\"");
    wait_failures(&p, 0);
}

/* v2: IPv4 with TLVs and a frame after it in the same segment, IPv6, and LOCAL (haproxy's health
 * check) keeping the socket's address. */
static void test_proxy_v2_by_hand(void **state)
{
    (void)state;
    struct psrv p = start_proxy(NULL);
    int direct = rc_connect(p.s);
    size_t mark = rc_log_mark(p.s);

    int a = proxy_client(&p);
    uint8_t h[256];
    size_t n = v2_ipv4(h, (const uint8_t[]){203, 0, 113, 7}, 4242, (uint16_t)p.pport);
    h[15] = 12 + 7 + 9; /* the block grows by two TLVs: CRC32C and UNIQUE_ID */
    memcpy(h + n,
           "\x03\x00\x04\x01\x02\x03\x04\x05\x00\x06"
           "abc123",
           16);
    n += 16;
    memcpy(h + n, "v2 frame\n", 9);
    rc_send(a, h, n + 9);
    wait_connected(&p, mark, "203.0.113.7:4242");
    rc_expect_str(direct, "v2 frame\n");

    int b = proxy_client(&p);
    memcpy(h, V2_SIG "\x21\x21\x00\x24", 16);
    static const uint8_t six[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x08};
    memcpy(h + 16, six, 16);
    memset(h + 32, 0, 16);
    h[47] = 1;
    memcpy(h + 48, "\x11\x94\x00\x01", 4); /* port 4500 */
    rc_send(b, h, 52);
    wait_connected(&p, mark, "[2001:db8::8]:4500");

    int c = local_client(&p, mark, "127.0.0.1", p.pport);

    rc_send_str(c, "from local\n");
    rc_expect_str(direct, "from local\n");
    rc_expect_str(a, "from local\n");
    rc_expect_str(b, "from local\n");
    wait_failures(&p, 0);
}

/* A proxy listener on ::1: the header's address stands whatever the socket's family (a TCP4
 * header on an IPv6 connection), LOCAL keeps the socket's own [::1]:PORT, and a refused header
 * is logged and counted as on IPv4. */
static void test_proxy_ipv6_listener(void **state)
{
    (void)state;
    struct psrv p = start_proxy((const char *const[]){"--listen", "[::1]:0,proxy,role=pub", NULL});
    char host[64];
    int port6 = rc_listener_port(p.s, "proxy,role=pub", host, sizeof(host), NULL, 0);
    assert_string_equal(host, "::1");
    int direct = rc_connect(p.s);
    size_t mark = rc_log_mark(p.s);

    int a = rc_connect_opts(p.s, "::1", &(struct rc_sockopts){.port = port6});
    char h[128];
    snprintf(h, sizeof(h), "PROXY TCP4 192.0.2.44 127.0.0.1 6161 %d\r\nover six\n", port6);
    rc_send_str(a, h);
    wait_connected(&p, mark, "192.0.2.44:6161");
    rc_expect_str(direct, "over six\n");

    int b = local_client(&p, mark, "::1", port6);
    rc_send_str(b, "local six\n");
    rc_expect_str(direct, "local six\n");
    expect_nothing(a, "a publisher of a role=pub listener");

    int c = rc_connect_opts(p.s, "::1", &(struct rc_sockopts){.port = port6});
    rc_send_str(c, "PROXY TCP6 not-an-address ::1 1 2\r\n");
    expect_refused(&p, mark, c);
    wait_failures(&p, 1);
    rc_send_str(a, "still here\n");
    rc_expect_str(direct, "still here\n");
}

/* ------------------------------------------------------------------ refusals */

/* Each malformed header: closed, its failure line, never "connected.", never relayed; counted. */
static void test_proxy_malformed(void **state)
{
    (void)state;
    struct psrv p = start_proxy(NULL);
    int direct = rc_connect(p.s);
    char long_line[160];
    memset(long_line, 'f', sizeof(long_line) - 1);
    memcpy(long_line, "PROXY UNKNOWN ", 14);
    long_line[sizeof(long_line) - 1] = '\0';
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } bad[] = {
#define BAD(w, lit) {w, lit, sizeof(lit) - 1}
        BAD("no header, a frame", "PUB hello\n"),
        BAD("an HTTP request", "GET / HTTP/1.1\r\n\r\n"),
        BAD("v1, port 65536", "PROXY TCP4 203.0.113.7 127.0.0.1 65536 1\r\n"),
        BAD("v1, leading zero", "PROXY TCP4 203.0.113.07 127.0.0.1 1 1\r\n"),
        BAD("v1, IPv6 in TCP4", "PROXY TCP4 ::1 127.0.0.1 1 1\r\n"),
        BAD("v1, LF alone", "PROXY TCP4 203.0.113.7 127.0.0.1 1 1\nPUB x\n"),
        BAD("v1, two spaces", "PROXY  TCP4 203.0.113.7 127.0.0.1 1 1\r\n"),
        BAD("v2, version 1", V2_SIG "\x11\x11\x00\x0c"
                                    "\xcb\x00\x71\x07\x7f\x00\x00\x01\x10\x92\x00\x01"),
        BAD("v2, command 2", V2_SIG "\x22\x11\x00\x0c"
                                    "\xcb\x00\x71\x07\x7f\x00\x00\x01\x10\x92\x00\x01"),
        BAD("v2, block too short", V2_SIG "\x21\x11\x00\x0b"
                                          "\xcb\x00\x71\x07\x7f\x00\x00\x01\x10\x92\x00"),
        BAD("v2, too long", V2_SIG "\x21\x11\xff\xff"),
#undef BAD
    };
    size_t n = sizeof(bad) / sizeof(bad[0]);
    size_t mark = rc_log_mark(p.s);
    for (size_t i = 0; i < n; i++) {
        int fd = proxy_client(&p);
        rc_send_lenient(fd, bad[i].bytes, bad[i].len, RC_IO_MS);
        print_message("refused: %s\n", bad[i].what);
        expect_refused(&p, mark, fd);
    }
    /* No CRLF within 107 bytes. */
    int fd = proxy_client(&p);
    rc_send_lenient(fd, long_line, strlen(long_line), RC_IO_MS);
    expect_refused(&p, mark, fd);
    wait_failures(&p, (double)n + 1);
    assert_int_equal(rc_log_count(p.s, mark, " connected."), 0);
    assert_int_equal(rc_log_count(p.s, mark, "203.0.113."), 0);
    expect_nothing(direct, "the direct client");
}

/*
 * --auth-timeout 0.5: a client that sends nothing and one that sends half a header are closed
 * after it and counted; one whose header came stays past it.
 */
static void test_proxy_timeout(void **state)
{
    (void)state;
    static const char *const extra[] = {"--auth-timeout", "0.5", NULL};
    struct psrv p = start_proxy(extra);
    int direct = rc_connect(p.s);
    size_t mark = rc_log_mark(p.s);
    int good = proxy_client(&p);
    send_v1(&p, good, "203.0.113.7", 4242);
    wait_connected(&p, mark, "203.0.113.7:4242");

    int64_t t0 = rc_now_ms();
    int silent = proxy_client(&p);
    int half = proxy_client(&p);
    rc_send_str(half, "PROXY TCP4 203.0.113.9 127.0.0.1 ");
    expect_refused(&p, mark, silent);
    int64_t waited = rc_now_ms() - t0;
    expect_refused(&p, mark, half);
    if (waited < 400 || waited > 8000)
        fail_msg("the silent client was closed %lld ms after it connected (timeout 0.5 s)",
                 (long long)waited);
    wait_failures(&p, 2);
    assert_int_equal(rc_log_count(p.s, mark, "203.0.113.9"), 0);

    rc_send_str(good, "still here\n");
    rc_expect_str(direct, "still here\n");
}

/*
 * --max-clients-per-ip 1 counts the header's address: every client here comes from 127.0.0.1,
 * yet a second 203.0.113.7 is refused, a 203.0.113.8 is taken, and once the first 203.0.113.7
 * left another is taken.
 */
static void test_proxy_max_clients_per_ip(void **state)
{
    (void)state;
    static const char *const extra[] = {"--max-clients-per-ip", "1", NULL};
    struct psrv p = start_proxy(extra);
    size_t mark = rc_log_mark(p.s);
    int a = proxy_client(&p);
    send_v1(&p, a, "203.0.113.7", 1000);
    wait_connected(&p, mark, "203.0.113.7:1000");

    int b = proxy_client(&p);
    uint8_t h[64];
    rc_send(b, h, v2_ipv4(h, (const uint8_t[]){203, 0, 113, 7}, 1001, (uint16_t)p.pport));
    rc_expect_closed(b);

    /* The refusal names the header's address (logged at most once a second: waited for). */
    wait_out_or_err(p.s, mark, "--max-clients-per-ip (1) reached, the last from 203.0.113.7");

    int c = proxy_client(&p);
    send_v1(&p, c, "203.0.113.8", 1002);
    wait_connected(&p, mark, "203.0.113.8:1002");
    assert_int_equal(rc_log_count(p.s, mark, "203.0.113.7:1001 connected."), 0);

    /* Once the relay closed the first one's descriptor, its address has room again. */
    int fds = rc_fd_count(p.s);
    mark = rc_log_mark(p.s);
    rc_close(a);
    if (!rc_log_wait(p.s, mark, "203.0.113.7:1000 disconnected.", RC_WAIT_MS))
        fail_msg("no server log line \"203.0.113.7:1000 disconnected.\"");
    if (rc_wait_fd_count(p.s, fds - 1, RC_WAIT_MS) != fds - 1)
        fail_msg("the relay did not close the first client's descriptor");
    int d = proxy_client(&p);
    send_v1(&p, d, "203.0.113.7", 1003);
    wait_connected(&p, mark, "203.0.113.7:1003");
    rc_send_str(d, "taken\n");
    rc_expect_str(c, "taken\n");
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_proxy_haproxy_sends_v1, teardown),
        cmocka_unit_test_teardown(test_proxy_haproxy_sends_v2, teardown),
        cmocka_unit_test_teardown(test_proxy_haproxy_v1, teardown),
        cmocka_unit_test_teardown(test_proxy_haproxy_v2, teardown),
        cmocka_unit_test_teardown(test_proxy_v1_by_hand, teardown),
        cmocka_unit_test_teardown(test_proxy_v2_by_hand, teardown),
        cmocka_unit_test_teardown(test_proxy_ipv6_listener, teardown),
        cmocka_unit_test_teardown(test_proxy_malformed, teardown),
        cmocka_unit_test_teardown(test_proxy_timeout, teardown),
        cmocka_unit_test_teardown(test_proxy_max_clients_per_ip, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
