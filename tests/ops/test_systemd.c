/*
 * systemd integration without a running systemd: socket activation through
 * systemd-socket-activate (package systemd), sd_notify messages on a NOTIFY_SOCKET the test
 * opens, and the registered-buffer fallback when running as an unprivileged user with a small
 * RLIMIT_MEMLOCK.
 *
 * The harness starts whatever $RINGCAST_BIN names, so a wrapper that execs ringcast in the same
 * process (systemd-socket-activate, sh, prlimit + setpriv) is started by pointing RINGCAST_BIN at
 * it for the time of one start; the server's pid is then ringcast's pid.
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
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char ringcast_bin[4096]; /* $RINGCAST_BIN as given to the test */

/* ------------------------------------------------------------------ helpers */

static bool find_tool(const char *name, char *path, size_t cap)
{
    static const char *const dirs[] = {"/usr/bin",       "/bin",         "/usr/sbin",       "/sbin",
                                       "/usr/local/bin", "/lib/systemd", "/usr/lib/systemd"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(*dirs); i++) {
        snprintf(path, cap, "%s/%s", dirs[i], name);
        if (access(path, X_OK) == 0)
            return true;
    }
    return false;
}

/* Starts the server through @wrapper (an absolute path), which must exec ringcast in-process. */
static struct rc_server *start_via(const char *wrapper, const char *const *argv,
                                   const char *const *env, int *status)
{
    setenv("RINGCAST_BIN", wrapper, 1);
    struct rc_opts o = {.argv = argv, .env = env, .no_port = true};
    int st = 0;
    struct rc_server *s = rc_try_start(&o, &st);
    setenv("RINGCAST_BIN", ringcast_bin, 1);
    if (status)
        *status = st;
    return s;
}

/* A loopback port nobody listens on right now (bind to 0, read it, close). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/*
 * systemd-socket-activate execs the service only at the first connection, like systemd itself.
 * This thread makes that connection: it retries until the socket listens (bounded), and the
 * connection it makes is the relay's first client.
 */
struct first_client {
    pthread_t thread;
    int port;
    int fd; /* connected socket, or -1 */
};

static void *first_client_main(void *arg)
{
    struct first_client *fc = arg;
    int64_t deadline = rc_now_ms() + RC_START_TIMEOUT_MS;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)fc->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    while (rc_now_ms() < deadline) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            fc->fd = fd;
            return NULL;
        }
        close(fd);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void first_client_start(struct first_client *fc, int port)
{
    fc->port = port;
    fc->fd = -1;
    assert_int_equal(pthread_create(&fc->thread, NULL, first_client_main, fc), 0);
}

static int first_client_join(struct first_client *fc)
{
    pthread_join(fc->thread, NULL);
    return fc->fd;
}

/* Relays a few lines from @pub to @sub and back, checking the bytes. */
static void relay_both_ways(int x, int y)
{
    char buf[4096];
    size_t len = 0;
    for (uint32_t i = 0; i < 32; i++)
        len += rc_make_line(buf + len, 128, "x", i);
    int ends[2] = {x, y};
    for (int dir = 0; dir < 2; dir++) {
        struct rc_flow f[2] = {
            {.fd = ends[dir], .out = (const uint8_t *)buf, .out_len = len},
            {.fd = ends[!dir], .in = malloc(len), .in_len = len},
        };
        if (!rc_transfer(f, 2, RC_IO_MS))
            fail_msg("relaying %zu bytes did not complete within %d ms", len, RC_IO_MS);
        assert_memory_equal(f[1].in, buf, len);
        free(f[1].in);
    }
}

/* An HTTP GET on a loopback port; returns the status (0 if none). */
static int http_status(struct rc_server *s, int port, const char *path)
{
    struct rc_server m = *s;
    m.port = port;
    int fd = rc_connect_addr(&m, "127.0.0.1", 0);
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    rc_send_str(fd, req);
    char resp[65536];
    size_t n = rc_recv_until_eof(fd, resp, sizeof(resp) - 1, RC_IO_MS);
    rc_close(fd);
    if (n == (size_t)-1)
        fail_msg("no answer from the metrics port %d", port);
    resp[n] = '\0';
    int status = 0;
    sscanf(resp, "HTTP/1.1 %d", &status);
    return status;
}

/* ------------------------------------------------------------------ socket activation */

static char socket_activate[4096];

static bool have_socket_activate(void)
{
    return find_tool("systemd-socket-activate", socket_activate, sizeof(socket_activate));
}

/*
 * Starts ringcast under systemd-socket-activate listening on the given ports, with
 * --fdname=@fdnames when not NULL, plus ringcast options @args. Retries with new ports when one
 * was taken meanwhile. Returns the server; *first is the client that triggered the activation.
 */
static struct rc_server *activate(int nports, int *ports, const char *fdnames,
                                  const char *const *args, int *first)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        char listen[2][64], names[128];
        const char *argv[32];
        size_t n = 0;
        for (int i = 0; i < nports; i++) {
            ports[i] = free_port();
            snprintf(listen[i], sizeof(listen[i]), "--listen=127.0.0.1:%d", ports[i]);
            argv[n++] = listen[i];
        }
        if (fdnames) {
            snprintf(names, sizeof(names), "--fdname=%s", fdnames);
            argv[n++] = names;
        }
        argv[n++] = ringcast_bin;
        for (size_t i = 0; args && args[i] && n < 31; i++)
            argv[n++] = args[i];
        argv[n] = NULL;

        struct first_client fc;
        first_client_start(&fc, ports[0]);
        int st = 0;
        struct rc_server *s = start_via(socket_activate, argv, NULL, &st);
        *first = first_client_join(&fc);
        if (s) {
            if (*first < 0)
                fail_msg("the activating connection to port %d failed", ports[0]);
            return s;
        }
        if (*first >= 0)
            close(*first);
        /* Exit 1 with "Address already in use": a port was taken after free_port(); retry. */
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 1))
            fail_msg("systemd-socket-activate ended with status 0x%x", st);
    }
    fail_msg("could not start systemd-socket-activate on free ports");
    return NULL;
}

/* One unnamed socket: the relay. The start line shows its address; no port of its own. */
static void test_systemd_socket_activation(void **state)
{
    (void)state;
    if (!have_socket_activate()) {
        fprintf(stderr, "systemd-socket-activate not found (package systemd): skipped\n");
        skip();
    }
    int port, first;
    /* --port is ignored when a socket is passed in. */
    static const char *const args[] = {"--port", "1", NULL};
    struct rc_server *s = activate(1, &port, NULL, args, &first);
    assert_string_equal(s->host, "127.0.0.1");
    assert_int_equal(s->port, port);
    char line[256], want[128];
    assert_true(rc_log_find(s, 0, "Server started at: ", line, sizeof(line)));
    snprintf(want, sizeof(want), "Server started at: 127.0.0.1:%d", port);
    assert_string_equal(line, want);

    /* The connection that started the service was queued on the passed socket: it is served. */
    rc_wait_client_log(s, 0, rc_port_of(first), "connected.");
    int other = rc_connect(s);
    relay_both_ways(first, other);
    close(first);
}

/* Two named sockets, in either order: "relay" for clients, "metrics" for the endpoint. */
static void test_systemd_socket_activation_named(void **state)
{
    (void)state;
    if (!have_socket_activate()) {
        fprintf(stderr, "systemd-socket-activate not found (package systemd): skipped\n");
        skip();
    }
    static const char *const orders[2] = {"relay:metrics", "metrics:relay"};
    for (int o = 0; o < 2; o++) {
        int ports[2], first;
        /* --metrics is ignored when a metrics socket is passed in. */
        static const char *const args[] = {"--metrics", "127.0.0.1:1", NULL};
        /* The activation is triggered on ports[0], which ever socket that is. */
        struct rc_server *s = activate(2, ports, orders[o], args, &first);
        int relay = o == 0 ? ports[0] : ports[1], metrics = o == 0 ? ports[1] : ports[0];
        assert_int_equal(s->port, relay);
        char want[128];
        snprintf(want, sizeof(want), "Metrics at: http://127.0.0.1:%d/metrics", metrics);
        if (!rc_log_wait(s, 0, want, RC_WAIT_MS))
            fail_msg("no \"%s\" line", want);
        if (o == 0)
            rc_wait_client_log(s, 0, rc_port_of(first), "connected.");
        assert_int_equal(http_status(s, metrics, "/healthz"), 200);
        assert_int_equal(http_status(s, metrics, "/metrics"), 200);
        int a = rc_connect(s), b = rc_connect(s);
        relay_both_ways(a, b);
        if (o == 1) {
            /* The activating connection went to the metrics socket: answered like any other. */
            rc_send_str(first, "GET /healthz HTTP/1.1\r\n\r\n");
            char resp[1024];
            size_t n = rc_recv_until_eof(first, resp, sizeof(resp) - 1, RC_IO_MS);
            assert_true(n != (size_t)-1 && n > 12);
            assert_memory_equal(resp, "HTTP/1.1 200", 12);
        }
        close(first);
        rc_signal(s, SIGTERM);
        int st = rc_wait_exit(s, RC_WAIT_MS);
        if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            rc_dump(s);
            fail_msg("exit status 0x%x after SIGTERM, want 0", st);
        }
    }
}

/* A passed socket with another name is refused: exit 1 naming it. */
static void test_systemd_socket_activation_bad_name(void **state)
{
    (void)state;
    if (!have_socket_activate()) {
        fprintf(stderr, "systemd-socket-activate not found (package systemd): skipped\n");
        skip();
    }
    char listen[64];
    int port = free_port();
    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", port);
    const char *argv[] = {listen, "--fdname=bogus", ringcast_bin, NULL};
    struct first_client fc;
    first_client_start(&fc, port);
    int st = 0;
    struct rc_server *s = start_via(socket_activate, argv, NULL, &st);
    int first = first_client_join(&fc);
    if (first >= 0)
        close(first);
    if (s)
        fail_msg("ringcast started with a socket named 'bogus'");
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 1))
        fail_msg("exit status 0x%x, want 1", st);
}

/* ------------------------------------------------------------------ sd_notify */

struct notify_sock {
    int fd;
    char name[108]; /* for NOTIFY_SOCKET: "@..." (abstract) */
    char env[128];
};

static void notify_open(struct notify_sock *ns)
{
    static int counter;
    ns->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(ns->fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(ns->name, sizeof(ns->name), "@ringcast-ops-notify-%d-%d", (int)getpid(), counter++);
    /* Abstract namespace: a leading NUL instead of '@'. */
    size_t n = strlen(ns->name);
    memcpy(a.sun_path, ns->name, n);
    a.sun_path[0] = '\0';
    assert_int_equal(bind(ns->fd, (struct sockaddr *)&a,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)),
                     0);
    int one = 1;
    assert_int_equal(setsockopt(ns->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
    snprintf(ns->env, sizeof(ns->env), "NOTIFY_SOCKET=%s", ns->name);
}

/*
 * Receives one datagram within timeout_ms into buf (NUL-terminated); *pid gets the sender's pid.
 * Returns false on timeout.
 */
static bool notify_recv(struct notify_sock *ns, char *buf, size_t cap, pid_t *pid, int timeout_ms)
{
    int64_t deadline = rc_now_ms() + timeout_ms;
    for (;;) {
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(struct ucred))];
        } ctl;
        struct iovec iov = {.iov_base = buf, .iov_len = cap - 1};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof(ctl)};
        ssize_t n = recvmsg(ns->fd, &mh, MSG_DONTWAIT);
        if (n >= 0) {
            buf[n] = '\0';
            *pid = 0;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                    struct ucred cred;
                    memcpy(&cred, CMSG_DATA(c), sizeof(cred));
                    *pid = cred.pid;
                }
            }
            return true;
        }
        int left = (int)(deadline - rc_now_ms());
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = ns->fd, .events = POLLIN};
        poll(&p, 1, left);
    }
}

/* True if the message has the line @line ("READY=1") or a line starting with it ("STATUS="). */
static bool has_line(const char *msg, const char *line, bool prefix)
{
    size_t n = strlen(line);
    for (const char *p = msg; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (prefix ? (len >= n && !strncmp(p, line, n)) : (len == n && !strncmp(p, line, n)))
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/*
 * Waits for a message containing @line from @pid; stores the message in @out. Counts in *seen
 * (if not NULL) the WATCHDOG=1 messages that passed meanwhile.
 */
static void notify_expect(struct notify_sock *ns, pid_t pid, const char *line, bool prefix,
                          char *out, size_t cap, int *watchdogs)
{
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    char msg[4096];
    for (;;) {
        pid_t from = 0;
        int left = (int)(deadline - rc_now_ms());
        if (left <= 0 || !notify_recv(ns, msg, sizeof(msg), &from, left))
            fail_msg("no notification with \"%s\" within %d ms", line, RC_WAIT_MS);
        if (from != pid)
            fail_msg("notification \"%s\" from pid %d, want ringcast's pid %d", msg, (int)from,
                     (int)pid);
        if (watchdogs && has_line(msg, "WATCHDOG=1", false))
            ++*watchdogs;
        if (has_line(msg, line, prefix)) {
            if (out)
                snprintf(out, cap, "%s", msg);
            return;
        }
    }
}

/* /bin/sh sets WATCHDOG_PID to its own pid, which exec keeps for ringcast. */
static struct rc_server *start_notified(struct notify_sock *ns, const char *watchdog_pid)
{
    char sh[4096];
    if (!find_tool("sh", sh, sizeof(sh)))
        fail_msg("no sh");
    const char *argv[] = {"-c",
                          watchdog_pid
                              ? "WATCHDOG_PID=$1; export WATCHDOG_PID; shift; exec \"$0\" \"$@\""
                              : "WATCHDOG_PID=$$; export WATCHDOG_PID; shift; exec \"$0\" \"$@\"",
                          ringcast_bin,
                          watchdog_pid ? watchdog_pid : "-",
                          "--port",
                          "0",
                          NULL};
    const char *env[] = {ns->env, "WATCHDOG_USEC=200000", NULL};
    int st = 0;
    struct rc_server *s = start_via(sh, argv, env, &st);
    if (!s)
        fail_msg("ringcast did not start (status 0x%x)", st);
    return s;
}

/* READY=1 with STATUS=, WATCHDOG=1 every 100 ms, STATUS= with the client count, STOPPING=1. */
static void test_systemd_notify(void **state)
{
    (void)state;
    struct notify_sock ns;
    notify_open(&ns);
    struct rc_server *s = start_notified(&ns, NULL);

    char msg[4096], want[128];
    notify_expect(&ns, s->pid, "READY=1", false, msg, sizeof(msg), NULL);
    snprintf(want, sizeof(want), "STATUS=listening on 127.0.0.1:%d", s->port);
    if (!has_line(msg, want, false))
        fail_msg("READY=1 came as \"%s\", without \"%s\"", msg, want);

    /* WATCHDOG_USEC=200000: a ping every 100 ms. Several within a generous bound. */
    int64_t t0 = rc_now_ms();
    int watchdogs = 0;
    while (watchdogs < 5)
        notify_expect(&ns, s->pid, "WATCHDOG=1", false, NULL, 0, &watchdogs);
    int64_t took = rc_now_ms() - t0;
    if (took > 5000)
        fail_msg("5 watchdog pings took %lld ms, want about 500", (long long)took);

    int a = rc_connect(s), b = rc_connect(s);
    notify_expect(&ns, s->pid, "STATUS=2 client(s)", false, NULL, 0, NULL);
    rc_close(a);
    notify_expect(&ns, s->pid, "STATUS=1 client(s)", false, NULL, 0, NULL);

    /* SIGTERM: STOPPING=1 when the drain starts, then exit 0. */
    rc_signal(s, SIGTERM);
    notify_expect(&ns, s->pid, "STOPPING=1", false, NULL, 0, NULL);
    int st = rc_wait_exit(s, RC_WAIT_MS);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rc_dump(s);
        fail_msg("exit status 0x%x after SIGTERM, want 0", st);
    }
    (void)b;
    close(ns.fd);
}

/* WATCHDOG_PID naming another process: the watchdog is not ours, no WATCHDOG=1 is sent. */
static void test_systemd_watchdog_other_pid(void **state)
{
    (void)state;
    struct notify_sock ns;
    notify_open(&ns);
    struct rc_server *s = start_notified(&ns, "1");
    notify_expect(&ns, s->pid, "READY=1", false, NULL, 0, NULL);
    /* Negative check: 1 s is ten watchdog periods. */
    int64_t deadline = rc_now_ms() + 1000;
    char msg[4096];
    pid_t from;
    while (rc_now_ms() < deadline) {
        if (notify_recv(&ns, msg, sizeof(msg), &from, (int)(deadline - rc_now_ms())) &&
            has_line(msg, "WATCHDOG=1", false))
            fail_msg("WATCHDOG=1 sent although WATCHDOG_PID is another process");
    }
    close(ns.fd);
}

/* ------------------------------------------------------------------ registered-buffer fallback */

static char tmpdir[64];

static int fallback_teardown(void **state)
{
    int rc = rc_teardown(state);
    if (tmpdir[0]) {
        char path[128];
        snprintf(path, sizeof(path), "%s/ringcast", tmpdir);
        unlink(path);
        rmdir(tmpdir);
        tmpdir[0] = '\0';
    }
    return rc;
}

/* Copies the binary where any user can run it (the build tree may be private). */
static void copy_binary(char *dst, size_t cap)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ringcast-ops-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    assert_int_equal(chmod(tmpdir, 0755), 0);
    snprintf(dst, cap, "%s/ringcast", tmpdir);
    int in = open(ringcast_bin, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    assert_true(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(fchmod(out, 0755), 0);
    assert_int_equal(close(out), 0);
}

static int proc_uid(pid_t pid)
{
    return (int)sp_proc_status(pid, "Uid:");
}

/* Relays enough for zero-copy sends to happen, and checks every byte. */
static void relay_zerocopy(struct rc_server *s)
{
    int pub = rc_connect(s), sub = rc_connect(s);
    size_t len = 256 * 1024;
    char *data = malloc(len);
    size_t off = 0;
    for (uint32_t i = 0; off + 1024 <= len; i++)
        off += rc_make_line(data + off, 1024, "z", i);
    struct rc_flow f[2] = {
        {.fd = pub, .out = (const uint8_t *)data, .out_len = off},
        {.fd = sub, .in = malloc(off), .in_len = off},
    };
    if (!rc_transfer(f, 2, RC_IO_MS))
        fail_msg("relaying %zu bytes with --zerocopy on did not complete", off);
    assert_memory_equal(f[1].in, data, off);
    free(f[1].in);
    free(data);
}

/* Waits (bounded) until the server's stderr contains @needle. */
static bool err_wait_contains(struct rc_server *s, const char *needle, int timeout_ms)
{
    int64_t deadline = rc_now_ms() + timeout_ms;
    while (!rc_err_contains(s, needle)) {
        int left = (int)(deadline - rc_now_ms());
        if (left <= 0)
            return false;
        rc_err_wait_lines(s, rc_err_lines(s) + 1, left);
    }
    return true;
}

static const char fallback_warning[] = "zero-copy: cannot register the broadcast log (";

/* Starts the copied binary as nobody with RLIMIT_MEMLOCK @memlock bytes and --zerocopy on. */
static struct rc_server *start_as_nobody(const char *bin, long memlock, int *status)
{
    char prlimit[4096], setpriv[4096], limit[64];
    if (!find_tool("prlimit", prlimit, sizeof(prlimit)) ||
        !find_tool("setpriv", setpriv, sizeof(setpriv)))
        fail_msg("prlimit or setpriv not found (package util-linux)");
    snprintf(limit, sizeof(limit), "--memlock=%ld:%ld", memlock, memlock);
    const char *argv[] = {limit,
                          setpriv,
                          "--reuid=65534",
                          "--regid=65534",
                          "--clear-groups",
                          "--no-new-privs",
                          bin,
                          "--port",
                          "0",
                          "--zerocopy",
                          "on",
                          NULL};
    struct rc_server *s = start_via(prlimit, argv, NULL, status);
    if (s)
        assert_int_equal(proc_uid(s->pid), 65534);
    return s;
}

static void stop_exit0(struct rc_server *s)
{
    rc_signal(s, SIGTERM);
    int st = rc_wait_exit(s, RC_WAIT_MS);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rc_dump(s);
        fail_msg("exit status 0x%x after SIGTERM, want 0", st);
    }
}

/*
 * As nobody with a small RLIMIT_MEMLOCK the broadcast log (128 MiB pinned at the defaults) cannot
 * be registered: ringcast warns once and keeps relaying with zero-copy sends that pin per send.
 *
 * With 144 MiB (LimitMEMLOCK= of tools/systemd/ringcast.service) the log registers
 * and nothing is said.
 */
static void test_systemd_fixed_buffer_fallback(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "not root: cannot switch to an unprivileged user; skipped\n");
        skip();
    }
    char prlimit[4096], bin[128];
    char setpriv[4096];
    if (!find_tool("prlimit", prlimit, sizeof(prlimit)) ||
        !find_tool("setpriv", setpriv, sizeof(setpriv))) {
        fprintf(stderr, "prlimit or setpriv not found (package util-linux): skipped\n");
        skip();
    }
    copy_binary(bin, sizeof(bin));

    int st = 0;
    /* io_uring charges RLIMIT_MEMLOCK per user, and a ring just closed is uncharged only when
     * the kernel's deferred teardown runs: 1 MiB leaves room for that while still being far too
     * small for the log. (ringcast shrinks its rings to fit limits as low as 64 KiB.) */
    long memlock = 1L << 20;
    struct rc_server *s = start_as_nobody(bin, memlock, &st);
    if (!s)
        fail_msg("ringcast did not start as nobody with RLIMIT_MEMLOCK %ld (status 0x%x)", memlock,
                 st);
    relay_zerocopy(s);
    if (!err_wait_contains(s, fallback_warning, RC_WAIT_MS)) {
        rc_dump(s);
        fail_msg("no \"%s...\" warning on stderr", fallback_warning);
    }
    size_t lines = rc_err_lines(s);
    relay_zerocopy(s); /* still relaying after the warning, and it is said only once */
    assert_int_equal(rc_err_lines(s), lines);
    stop_exit0(s);

    /* Control: root (CAP_IPC_LOCK) with the same limit registers the log: nothing is said. */
    char limit[64];
    snprintf(limit, sizeof(limit), "--memlock=%ld:%ld", memlock, memlock);
    const char *argv_root[] = {limit, bin, "--port", "0", "--zerocopy", "on", NULL};
    s = start_via(prlimit, argv_root, NULL, &st);
    if (!s)
        fail_msg("ringcast did not start as root (status 0x%x)", st);
    relay_zerocopy(s);
    if (rc_err_contains(s, fallback_warning)) {
        rc_dump(s);
        fail_msg("root could not register the broadcast log either");
    }
    stop_exit0(s);

    /* Control, as the service runs: 144 MiB is enough to register the log. Needs a hard limit
     * that high (a container may lack CAP_SYS_RESOURCE to raise it). */
    struct rlimit rl;
    getrlimit(RLIMIT_MEMLOCK, &rl);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (144ul << 20)) {
        struct rlimit want = {rl.rlim_cur, 144ul << 20};
        if (setrlimit(RLIMIT_MEMLOCK, &want) < 0) {
            fprintf(stderr,
                    "cannot raise the hard RLIMIT_MEMLOCK to 144 MiB (%s): the control "
                    "with LimitMEMLOCK=144M is not run\n",
                    strerror(errno));
            return;
        }
    }
    s = start_as_nobody(bin, 144L << 20, &st);
    if (!s)
        fail_msg("ringcast did not start as nobody with RLIMIT_MEMLOCK 144 MiB (status 0x%x)", st);
    relay_zerocopy(s);
    if (rc_err_contains(s, fallback_warning)) {
        rc_dump(s);
        fail_msg("the broadcast log could not be registered within LimitMEMLOCK=144M");
    }
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    snprintf(ringcast_bin, sizeof(ringcast_bin), "%s", getenv("RINGCAST_BIN"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_systemd_socket_activation, rc_teardown),
        cmocka_unit_test_teardown(test_systemd_socket_activation_named, rc_teardown),
        cmocka_unit_test_teardown(test_systemd_socket_activation_bad_name, rc_teardown),
        cmocka_unit_test_teardown(test_systemd_notify, rc_teardown),
        cmocka_unit_test_teardown(test_systemd_watchdog_other_pid, rc_teardown),
        cmocka_unit_test_teardown(test_systemd_fixed_buffer_fallback, fallback_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
