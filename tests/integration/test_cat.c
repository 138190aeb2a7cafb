/*
 * ringcast-cat ($RINGCAST_CAT_BIN) against the real relay ($RINGCAST_BIN), and against a plain
 * listening socket where the relay cannot say what was sent (the AUTH frame): two instances talk
 * through the relay in both framings, --sub-only prints a raw publisher's frames, --pub-only
 * publishes a pipe and exits 0, --auth goes first, usage errors exit 2 and runtime failures 1.
 * --tls is proved against `openssl s_server` (no relay needed): both directions, the certificate
 * checks (CA, host name, --servername, --insecure), a client certificate, --auth inside TLS, and
 * key files that cannot be used; the certificates are made at run time with the openssl CLI.
 *
 * ringcast-cat's standard input and output are pipes (stdout a pipe, as with `| grep`: each frame
 * must come out without waiting for more). Every wait is bounded; nothing sleeps to pass.
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
#include <sys/ioctl.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define RUN_MS 10000
#define MAX_CATS 8

/* ------------------------------------------------------------------ running ringcast-cat */

static struct sp_child cats[MAX_CATS];
static size_t ncats;

static const char *cat_bin(void)
{
    const char *bin = getenv("RINGCAST_CAT_BIN");
    if (!bin || !*bin)
        fail_msg("RINGCAST_CAT_BIN is not set");
    return bin;
}

/* Starts BIN ARGS with pipes for its three standard streams (ringcast-cat, or the openssl
 * s_server it talks to). env: extra "NAME=VALUE" entries; RINGCAST_AUTH from the test's own
 * environment is never passed on. */
static struct sp_child *proc_start(const char *bin, const char *const *args, const char *const *env)
{
    if (ncats >= MAX_CATS)
        fail_msg("too many child processes in one test");
    const char *argv[24] = {bin};
    size_t na = 1;
    for (; args[na - 1]; na++) {
        if (na + 1 >= sizeof(argv) / sizeof(argv[0]))
            fail_msg("too many arguments");
        argv[na] = args[na - 1];
    }
    argv[na] = NULL;
    struct sp_child *c = &cats[ncats++];
    sp_child_start(c, argv, "RINGCAST_AUTH=", env);
    return c;
}

/* Starts ringcast-cat ARGS (see proc_start). */
static struct sp_child *cat_start_env(const char *const *args, const char *const *env)
{
    return proc_start(cat_bin(), args, env);
}

/* "127.0.0.1:PORT" or "[::1]:PORT" for a server. */
static const char *target(const struct rc_server *s)
{
    static char buf[80];
    if (strchr(s->host, ':'))
        snprintf(buf, sizeof(buf), "[%s]:%d", s->host, s->port);
    else
        snprintf(buf, sizeof(buf), "%s:%d", s->host, s->port);
    return buf;
}

/* Reads what has arrived on its standard error so far (for messages and diagnosis). */
static const char *cat_err(struct sp_child *c)
{
    return sp_child_err(c);
}

static void cat_write(struct sp_child *c, const void *buf, size_t len)
{
    if (sp_child_write(c, buf, len, RC_IO_MS) == 0)
        return;
    if (errno == ETIMEDOUT)
        fail_msg("ringcast-cat did not read its standard input within %d ms", RC_IO_MS);
    fail_msg("writing ringcast-cat's standard input: %s", strerror(errno));
}

static void cat_write_str(struct sp_child *c, const char *s)
{
    cat_write(c, s, strlen(s));
}

static void cat_close_stdin(struct sp_child *c)
{
    sp_child_close_in(c);
}

static void show(const char *label, const char *p, size_t len)
{
    fprintf(stderr, "%s (%zu bytes): \"", label, len);
    for (size_t i = 0; i < len && i < 120; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            fputc(ch, stderr);
        else
            fprintf(stderr, "\\x%02x", ch);
    }
    fprintf(stderr, "%s\"\n", len > 120 ? "..." : "");
}

/* Reads exactly len bytes of its standard output within RC_IO_MS and checks them. */
static void cat_expect(struct sp_child *c, const void *want, size_t len)
{
    char *got = malloc(len + 1);
    assert_non_null(got);
    const char *why;
    size_t done = sp_child_read(c, got, len, RC_IO_MS, &why);
    if (done == len && memcmp(got, want, len) == 0) {
        free(got);
        return;
    }
    fprintf(stderr, "ringcast-cat (pid %d): stdout differs (%s after %zu of %zu bytes)\n",
            (int)c->pid, done == len ? "content" : why, done, len);
    show("  want", want, len);
    show("  got ", got, done);
    fprintf(stderr, "  its stderr: %s\n", cat_err(c));
    free(got);
    fail_msg("ringcast-cat printed something else");
}

static void cat_expect_str(struct sp_child *c, const char *want)
{
    cat_expect(c, want, strlen(want));
}

/* Waits for it to exit (RC_WAIT_MS); returns its exit code (128 + signal when killed). */
static int cat_wait(struct sp_child *c)
{
    int code = sp_wait(c->pid, RC_WAIT_MS);
    if (code == -2)
        fail_msg("ringcast-cat did not exit within %d ms; stderr: %s", RC_WAIT_MS, cat_err(c));
    c->pid = 0;
    return code;
}

/* After it exited: fails unless its standard output has nothing more (up to EOF). */
static void cat_expect_no_more_output(struct sp_child *c)
{
    char buf[256];
    ssize_t n;
    int64_t deadline = rc_now_ms() + RC_IO_MS;
    while ((n = read(c->out, buf, sizeof(buf))) != 0) {
        if (n > 0) {
            show("unexpected output", buf, (size_t)n);
            fail_msg("ringcast-cat printed more than expected");
        }
        if (errno != EAGAIN && errno != EINTR)
            break;
        if (sp_remaining_ms(deadline) == 0)
            fail_msg("ringcast-cat's standard output was not closed");
        struct pollfd pfd = {.fd = c->out, .events = POLLIN};
        poll(&pfd, 1, sp_remaining_ms(deadline));
    }
}

/* Starts ringcast-cat ARGS... HOST:PORT on the relay and waits until the relay has registered
 * it, so that every frame completed from now on reaches it (PROTOCOL.md). */
static struct sp_child *cat_join(struct rc_server *s, const char *arg, ...)
{
    const char *args[12];
    size_t n = 0;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a; a = va_arg(ap, const char *)) {
        if (n + 2 >= sizeof(args) / sizeof(args[0]))
            fail_msg("too many arguments");
        args[n++] = a;
    }
    va_end(ap);
    args[n++] = target(s);
    args[n] = NULL;
    size_t mark = rc_log_mark(s);
    struct sp_child *c = cat_start_env(args, NULL);
    if (!rc_log_wait(s, mark, " connected.", RC_WAIT_MS))
        fail_msg("the relay never logged ringcast-cat's connection; its stderr: %s", cat_err(c));
    return c;
}

static int cat_teardown(void **state)
{
    for (size_t i = 0; i < ncats; i++)
        sp_child_reap(&cats[i]);
    ncats = 0;
    return rc_teardown(state);
}

static size_t count_lines(const char *text)
{
    size_t n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/* ------------------------------------------------------------------ (a) two instances */

static void two_cats(const char *framing)
{
    bool len32 = strcmp(framing, "len32") == 0;
    struct rc_server *s = rc_start("--framing", framing, NULL);
    struct sp_child *a = cat_join(s, "--framing", framing, NULL);
    struct sp_child *b = cat_join(s, "--framing", framing, NULL);
    int raw = rc_connect(s); /* what goes over the wire */

    cat_write_str(a, "hello from A\n");
    cat_expect_str(b, "hello from A\n");
    if (len32)
        rc_expect(raw, "\0\0\0\x0chello from A", 16);
    else
        rc_expect_str(raw, "hello from A\n");

    cat_write_str(b, "hi from B\n");
    cat_expect_str(a, "hi from B\n");

    /* An empty line is a frame; a last line without its newline is sent too. */
    cat_write_str(a, "x\n\ny");
    cat_close_stdin(a);
    cat_expect_str(b, "x\n\ny\n");
    if (len32)
        rc_expect(raw, "\0\0\0\x09hi from B\0\0\0\x01x\0\0\0\0\0\0\0\x01y", 27);
    else
        rc_expect_str(raw, "hi from B\nx\n\ny\n");

    /* Standard input at EOF: A keeps receiving (a half-close would be a disconnect). */
    cat_write_str(b, "still there?\n");
    cat_expect_str(a, "still there?\n");

    kill(a->pid, SIGINT);
    kill(b->pid, SIGINT);
    assert_int_equal(cat_wait(a), 0);
    assert_int_equal(cat_wait(b), 0);
    cat_expect_no_more_output(a); /* the relay does not echo A's own lines to it */
    cat_expect_no_more_output(b);
    assert_string_equal(cat_err(a), "");
}

static void test_cat_two_instances_line(void **state)
{
    two_cats("line");
}

static void test_cat_two_instances_len32(void **state)
{
    two_cats("len32");
}

/* ------------------------------------------------------------------ (b) --sub-only */

static void test_cat_sub_only_prints(void **state)
{
    struct rc_server *s = rc_start(NULL);
    struct sp_child *c = cat_join(s, "--sub-only", NULL);
    static const char never[] = "this must never be published\n";
    cat_write_str(c, never); /* into its standard input, which it must not read */
    int pub = rc_connect(s);
    int other = rc_connect(s);
    static const char frames[] = "one\n\nthree\r\nbytes \x01\x7f\xff\n";
    rc_send(pub, frames, sizeof(frames) - 1);
    cat_expect(c, frames, sizeof(frames) - 1);
    rc_expect(other, frames, sizeof(frames) - 1);
    /* The relay delivered pub's frames to it, so it has been running a while: its standard input
     * is still all there. */
    int unread = -1;
    assert_int_equal(ioctl(c->in, FIONREAD, &unread), 0);
    assert_int_equal(unread, (int)strlen(never));

    kill(c->pid, SIGTERM);
    assert_int_equal(cat_wait(c), 0);
    cat_expect_no_more_output(c);
    /* Every frame "other" got came from pub: nothing from ringcast-cat. */
    static const char last[] = "last\n";
    rc_send(pub, last, 5);
    rc_expect(other, last, 5);
}

static void test_cat_sub_only_len32(void **state)
{
    struct rc_server *s = rc_start("--framing", "len32", NULL);
    struct sp_child *c = cat_join(s, "--sub-only", "--framing", "len32", NULL);
    int pub = rc_connect(s);
    uint8_t wire[64];
    size_t n = 0;
    n += rc_make_len32(wire + n, "a", 1);
    n += rc_make_len32(wire + n, "", 0);
    n += rc_make_len32(wire + n, "b\nc", 3); /* a payload with a newline is printed as it is */
    n += rc_make_len32(wire + n, "tab\there\r", 9);
    rc_send(pub, wire, n);
    cat_expect_str(c, "a\n\nb\nc\ntab\there\r\n");
    kill(c->pid, SIGINT);
    assert_int_equal(cat_wait(c), 0);
    cat_expect_no_more_output(c);
}

static void test_cat_sub_only_ipv6(void **state)
{
    if (!rc_have_ipv6())
        skip();
    struct rc_server *s = rc_start("--address", "::1", NULL);
    struct sp_child *c = cat_join(s, "--sub-only", NULL);
    int pub = rc_connect(s);
    rc_send_str(pub, "over IPv6\n");
    cat_expect_str(c, "over IPv6\n");
    kill(c->pid, SIGINT);
    assert_int_equal(cat_wait(c), 0);
}

/* A frame over --max-frame: the frames before it are printed, then exit 1 with a message. */
static void test_cat_max_frame(void **state)
{
    struct rc_server *s = rc_start(NULL);
    struct sp_child *c = cat_join(s, "--sub-only", "--max-frame", "8", NULL);
    int pub = rc_connect(s);
    rc_send_str(pub, "1234567\n123456789\n");
    cat_expect_str(c, "1234567\n"); /* 8 bytes with its newline: just fits */
    assert_int_equal(cat_wait(c), 1);
    cat_expect_no_more_output(c);
    const char *err = cat_err(c);
    if (count_lines(err) != 1 || !strstr(err, "longer than --max-frame (8 bytes)"))
        fail_msg("line: stderr \"%s\"", err);

    /* len32: a header announcing more is refused as soon as it arrives. */
    struct rc_server *l = rc_start("--framing", "len32", NULL);
    c = cat_join(l, "--sub-only", "--framing", "len32", "--max-frame", "8", NULL);
    pub = rc_connect(l);
    /* The relay relays only whole frames: send all 1000 bytes. */
    static uint8_t wire[4 + 8 + 4 + 1000], big[1000];
    memset(big, 'z', sizeof(big));
    size_t n = rc_make_len32(wire, "12345678", 8);
    n += rc_make_len32(wire + n, big, sizeof(big));
    rc_send(pub, wire, n);
    cat_expect_str(c, "12345678\n");
    assert_int_equal(cat_wait(c), 1);
    cat_expect_no_more_output(c);
    err = cat_err(c);
    if (count_lines(err) != 1 || !strstr(err, "len32 frame of 1000 bytes, over --max-frame (8)"))
        fail_msg("len32: stderr \"%s\"", err);
}

/* ------------------------------------------------------------------ (c) --pub-only */

static void pub_only(const char *framing)
{
    bool len32 = strcmp(framing, "len32") == 0;
    struct rc_server *s = rc_start("--framing", framing, NULL);
    int sub = rc_connect(s);
    int noise = rc_connect(s);
    struct sp_child *c = cat_join(s, "--pub-only", "--framing", framing, NULL);

    /* What it receives is read and discarded. */
    uint8_t buf[64];
    size_t nn = len32 ? rc_make_len32(buf, "noise", 5) : (memcpy(buf, "noise\n", 6), 6);
    rc_send(noise, buf, nn);
    rc_expect(sub, buf, nn);

    enum { N = 1000 };
    char *text = malloc(N * 64), *wire = malloc(N * 68);
    assert_non_null(text);
    assert_non_null(wire);
    size_t tlen = 0, wlen = 0;
    for (unsigned i = 0; i < N; i++) {
        char line[64];
        int len = snprintf(line, sizeof(line), "line %04u %.*s", i, (int)(i % 37),
                           "abcdefghijklmnopqrstuvwxyz0123456789!");
        bool last = i == N - 1; /* the last one without its newline */
        memcpy(text + tlen, line, (size_t)len);
        tlen += (size_t)len;
        if (!last)
            text[tlen++] = '\n';
        if (len32) {
            wlen += rc_make_len32((uint8_t *)wire + wlen, line, (uint32_t)len);
        } else {
            memcpy(wire + wlen, line, (size_t)len);
            wlen += (size_t)len;
            wire[wlen++] = '\n';
        }
    }
    cat_write(c, text, tlen);
    cat_close_stdin(c);
    /* Exit 0 first: it must not leave before the relay has taken every line. */
    assert_int_equal(cat_wait(c), 0);
    rc_expect(sub, wire, wlen);
    cat_expect_no_more_output(c);
    assert_string_equal(cat_err(c), "");
    free(text);
    free(wire);
}

static void test_cat_pub_only_line(void **state)
{
    pub_only("line");
}

static void test_cat_pub_only_len32(void **state)
{
    pub_only("len32");
}

/* ------------------------------------------------------------------ (d) --auth */

/* A plain listening socket on 127.0.0.1: what ringcast-cat sends, unrelayed. */
static int listen_plain(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &sl) < 0)
        fail_msg("listen: %s", strerror(errno));
    *port = ntohs(sin.sin_port);
    return fd;
}

static int accept_within(int lfd, struct sp_child *c)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    if (poll(&pfd, 1, RC_WAIT_MS) != 1)
        fail_msg("ringcast-cat did not connect within %d ms; stderr: %s", RC_WAIT_MS, cat_err(c));
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        fail_msg("accept: %s", strerror(errno));
    return fd;
}

struct auth_case {
    const char *args[6]; /* before HOST:PORT */
    const char *env;     /* RINGCAST_AUTH=... or NULL */
    const char *want;    /* the first bytes on the wire */
    size_t want_len;
    bool reset; /* end with a reset instead of a close */
    bool sub_only;
};

static void test_cat_auth_first(void **state)
{
    static const struct auth_case cases[] = {
        {.args = {"--auth", "tok"}, .want = "AUTH tok\nhello\n", .want_len = 15},
        {.args = {"--auth", "tok", "--framing", "len32"},
         .want = "\0\0\0\x08"
                 "AUTH tok\0\0\0\x05hello",
         .want_len = 21,
         .reset = true},
        {.env = "RINGCAST_AUTH=envtok", .want = "AUTH envtok\nhello\n", .want_len = 18},
        /* --auth takes precedence over the environment */
        {.args = {"--auth", "flagtok"},
         .env = "RINGCAST_AUTH=envtok",
         .want = "AUTH flagtok\nhello\n",
         .want_len = 19,
         .reset = true},
        /* empty: no AUTH frame */
        {.env = "RINGCAST_AUTH=", .want = "hello\n", .want_len = 6},
        {.args = {"--sub-only", "--auth", "tok"},
         .want = "AUTH tok\n",
         .want_len = 9,
         .sub_only = true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct auth_case *k = &cases[i];
        int port;
        int lfd = listen_plain(&port);
        char where[32];
        snprintf(where, sizeof(where), "127.0.0.1:%d", port);
        const char *args[8];
        size_t n = 0;
        for (; k->args[n]; n++)
            args[n] = k->args[n];
        args[n++] = where;
        args[n] = NULL;
        const char *env[2] = {k->env, NULL};
        struct sp_child *c = cat_start_env(args, env);
        /* Written before the connection is even accepted: AUTH must still go first. */
        if (!k->sub_only)
            cat_write_str(c, "hello\n");
        int fd = accept_within(lfd, c);
        close(lfd);
        char got[64];
        const char *why;
        size_t len = rc_recv_exact(fd, got, k->want_len, RC_IO_MS, &why);
        if (len != k->want_len || memcmp(got, k->want, len) != 0) {
            show("want", k->want, k->want_len);
            show("got ", got, len);
            fail_msg("case %zu: ringcast-cat sent something else (%s)", i, why);
        }
        /* The "relay" goes away: a runtime failure, exit 1 with a message. */
        if (k->reset) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(fd);
        assert_int_equal(cat_wait(c), 1);
        const char *err = cat_err(c);
        const char *want_err =
            k->reset ? "connection reset by the relay" : "the relay closed the connection";
        if (count_lines(err) != 1 || !strstr(err, want_err) || !strstr(err, where))
            fail_msg("case %zu: stderr \"%s\", want one line with \"%s\"", i, err, want_err);
        if (strstr(err, "tok"))
            fail_msg("case %zu: the token shows in a message: %s", i, err);
    }
}

/* ------------------------------------------------------------------ (e) the command line */

static int run_cat(const char *const *args, char **out, char **err)
{
    const char *argv[12] = {cat_bin()};
    for (size_t i = 0; args[i]; i++)
        argv[i + 1] = args[i];
    return sp_run(argv, RUN_MS, out, err);
}

static void test_cat_usage_errors(void **state)
{
    static const char *const cases[][6] = {
        {"localhost:5000"},
        {"127.0.0.1"},
        {"127.0.0.1:"},
        {"[::1]"},
        {"::1:5000"},
        {"127.0.0.1:70000"},
        {"127.0.0.1:0"},
        {"--sub-only", "--pub-only", "127.0.0.1:5000"},
        {"--bogus", "127.0.0.1:5000"},
        {"-x", "127.0.0.1:5000"},
        {"--framing", "xml", "127.0.0.1:5000"},
        {"--framing"},
        {"--max-frame", "0", "127.0.0.1:5000"},
        {"--max-frame", "2G", "127.0.0.1:5000"},
        {"--auth", "", "127.0.0.1:5000"},
        {"--auth", "a\nb", "127.0.0.1:5000"},
        {"--auth", "with space", "127.0.0.1:5000"},
        {"127.0.0.1:5000", "127.0.0.1:5001"},
        /* TLS: the options that need --tls, a certificate without its key, and the reverse */
        {"--ca", "ca.pem", "127.0.0.1:5000"},
        {"--servername", "relay.example", "127.0.0.1:5000"},
        {"--insecure", "127.0.0.1:5000"},
        {"--cert", "c.pem", "--key", "c.key", "127.0.0.1:5000"},
        {"--tls", "--cert", "c.pem", "127.0.0.1:5000"},
        {"--tls", "--key", "c.key", "127.0.0.1:5000"},
        {"--tls", "--insecure", "--ca", "ca.pem", "127.0.0.1:5000"},
        {"--tls", "--ca", "", "127.0.0.1:5000"},
        {"--tls", "--servername", "", "127.0.0.1:5000"},
        {"--tls", "--servername", "a b", "127.0.0.1:5000"},
        {"--tls", "--ca"},
        {"--tls", "localhost:5000"},
        {NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out, *err;
        int code = run_cat(cases[i], &out, &err);
        char args[200] = "";
        for (int j = 0; cases[i][j]; j++) {
            strcat(args, cases[i][j]);
            strcat(args, " ");
        }
        if (code != 2)
            fail_msg("ringcast-cat %s: exit %d, want 2; stderr: %s", args, code, err);
        if (count_lines(err) != 1 || strncmp(err, "ringcast-cat: ", 14) != 0 ||
            !strstr(err, "--help"))
            fail_msg("ringcast-cat %s: want one line naming --help on stderr, got \"%s\"", args,
                     err);
        if (*out)
            fail_msg("ringcast-cat %s: printed \"%s\" on stdout", args, out);
        free(out);
        free(err);
    }
    /* RINGCAST_AUTH is checked like --auth, and its value never shown. */
    struct sp_child *c = cat_start_env((const char *const[]){"127.0.0.1:5000", NULL},
                                       (const char *const[]){"RINGCAST_AUTH=se\ncret", NULL});
    assert_int_equal(cat_wait(c), 2);
    const char *err = cat_err(c);
    if (count_lines(err) != 1 || !strstr(err, "RINGCAST_AUTH") || strstr(err, "cret"))
        fail_msg("RINGCAST_AUTH with a newline: stderr \"%s\"", err);
}

static void test_cat_help_version(void **state)
{
    char *out, *err;
    assert_int_equal(run_cat((const char *const[]){"--help", NULL}, &out, &err), 0);
    assert_non_null(strstr(out, "Usage: ringcast-cat"));
    assert_non_null(strstr(out, "--pub-only"));
    assert_non_null(strstr(out, "--tls"));
    assert_non_null(strstr(out, "--insecure"));
    assert_string_equal(err, "");
    char *help = out;
    free(err);
    assert_int_equal(run_cat((const char *const[]){"-h", NULL}, &out, &err), 0);
    assert_string_equal(out, help);
    free(help);
    free(out);
    free(err);
    assert_int_equal(run_cat((const char *const[]){"--version", NULL}, &out, &err), 0);
    assert_int_equal(strncmp(out, "ringcast-cat ", 13), 0);
    assert_int_equal(count_lines(out), 1);
    free(out);
    free(err);
}

static void test_cat_connection_refused(void **state)
{
    char where[32], *out, *err;
    snprintf(where, sizeof(where), "127.0.0.1:%d", sp_free_port());
    int code = run_cat((const char *const[]){"--sub-only", where, NULL}, &out, &err);
    if (code != 1 || count_lines(err) != 1 || !strstr(err, "Connection refused") ||
        !strstr(err, where))
        fail_msg("%s with nothing listening: exit %d, stderr \"%s\" (want exit 1, one line)", where,
                 code, err);
    assert_string_equal(out, "");
    free(out);
    free(err);
}

/* ------------------------------------------------------------------ (f) --tls */

/*
 * Certificates made at run time with the openssl CLI into a temporary directory (removed by the
 * group teardown): a CA, a server certificate for 127.0.0.1, ::1 and localhost, a client
 * certificate, and a server certificate issued by another CA. EC P-256 keys: quick to make.
 */
static char tls_dir[256];

static const char *openssl_bin(void)
{
    static char path[512];
    return *path ? path : sp_which("openssl", path, sizeof(path));
}

/* $tls_dir/name, in one of 32 rotating buffers (a case table uses several at once). */
static const char *tls_file(const char *name)
{
    static char bufs[32][600];
    static unsigned next;
    char *b = bufs[next++ % 32];
    snprintf(b, sizeof(bufs[0]), "%s/%s", tls_dir, name);
    return b;
}

static void openssl_run(const char *const *args)
{
    const char *argv[32] = {openssl_bin()};
    size_t n = 1;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    char *out, *err;
    int code = sp_run(argv, RC_IO_MS, &out, &err);
    if (code != 0)
        fail_msg("openssl %s %s: exit %d: %s", args[0], args[1] ? args[1] : "", code, err);
    free(out);
    free(err);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        fail_msg("%s: %s", path, strerror(errno));
}

/* NAME.key and NAME.pem, signed by CA.pem/CA.key (CA NULL: a self-signed CA), with the
 * extensions of EXT (NULL: none). */
static void make_cert(const char *name, const char *subj, const char *ca, const char *ext,
                      const char *serial)
{
    char key[64], pem[64], csr[64], ca_pem[64], ca_key[64], extf[64];
    snprintf(key, sizeof(key), "%s.key", name);
    snprintf(pem, sizeof(pem), "%s.pem", name);
    snprintf(csr, sizeof(csr), "%s.csr", name);
    snprintf(extf, sizeof(extf), "%s.ext", name);
    const char *ec[] = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"};
    if (!ca) {
        openssl_run((const char *const[]){"req", "-x509", ec[0], ec[1], ec[2], ec[3], ec[4],
                                          "-keyout", tls_file(key), "-out", tls_file(pem), "-days",
                                          "30", "-subj", subj, NULL});
        return;
    }
    snprintf(ca_pem, sizeof(ca_pem), "%s.pem", ca);
    snprintf(ca_key, sizeof(ca_key), "%s.key", ca);
    openssl_run((const char *const[]){"req", "-new", ec[0], ec[1], ec[2], ec[3], ec[4], "-keyout",
                                      tls_file(key), "-out", tls_file(csr), "-subj", subj, NULL});
    write_text(tls_file(extf), ext);
    openssl_run((const char *const[]){"x509", "-req", "-in", tls_file(csr), "-CA", tls_file(ca_pem),
                                      "-CAkey", tls_file(ca_key), "-set_serial", serial, "-days",
                                      "30", "-extfile", tls_file(extf), "-out", tls_file(pem),
                                      NULL});
}

/* Makes the certificates once; skips the test when there is no openssl CLI. */
static void tls_certs(void)
{
    if (*tls_dir)
        return;
    if (!openssl_bin())
        skip();
    const char *tmp = getenv("TMPDIR");
    snprintf(tls_dir, sizeof(tls_dir), "%s/ringcast-test-cat-tls-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tls_dir))
        fail_msg("mkdtemp %s: %s", tls_dir, strerror(errno));
    static const char server_ext[] = "basicConstraints=CA:FALSE\n"
                                     "extendedKeyUsage=serverAuth\n"
                                     "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n";
    make_cert("ca", "/CN=ringcast-cat test CA", NULL, NULL, NULL);
    make_cert("server", "/CN=ringcast-cat test server", "ca", server_ext, "0x1001");
    make_cert("client", "/CN=ringcast-cat test client/OU=both", "ca",
              "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n", "0x2001");
    make_cert("other-ca", "/CN=another CA", NULL, NULL, NULL);
    make_cert("other", "/CN=ringcast-cat test server by another CA", "other-ca", server_ext,
              "0x3001");
}

static int tls_group_teardown(void **state)
{
    (void)state;
    if (!*tls_dir)
        return 0;
    DIR *d = opendir(tls_dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.')
            unlink(tls_file(e->d_name));
    if (d)
        closedir(d);
    rmdir(tls_dir);
    return 0;
}

/* `openssl s_server` on 127.0.0.1 with CERT.pem/CERT.key and EXTRA arguments, standard streams
 * piped: what a client sends comes out of its standard output (-quiet prints nothing else), and
 * what goes into its standard input is sent to the client. *port gets its port. */
static struct sp_child *s_server(const char *cert, const char *const *extra, int *port)
{
    char pem[64], key[64];
    snprintf(pem, sizeof(pem), "%s.pem", cert);
    snprintf(key, sizeof(key), "%s.key", cert);
    /* A port free a moment ago may be taken before s_server binds it: then it exits, so try
     * another. */
    for (int attempt = 0; attempt < 5; attempt++) {
        char accept[32];
        *port = sp_free_port();
        snprintf(accept, sizeof(accept), "127.0.0.1:%d", *port);
        const char *args[20] = {"s_server",    "-accept", accept,        "-cert",
                                tls_file(pem), "-key",    tls_file(key), "-quiet"};
        size_t n = 8;
        for (size_t i = 0; extra && extra[i] && n < 19; i++)
            args[n++] = extra[i];
        args[n] = NULL;
        struct sp_child *srv = proc_start(openssl_bin(), args, NULL);
        /* The probe connection fails its handshake at once; s_server goes on to the next. */
        if (sp_wait_listening(*port, srv->pid, RC_WAIT_MS))
            return srv;
        if (sp_wait(srv->pid, 0) == -2)
            fail_msg("openssl s_server did not listen within %d ms: %s", RC_WAIT_MS, cat_err(srv));
        srv->pid = 0;
    }
    fail_msg("openssl s_server could not listen on a free port 5 times");
    return NULL;
}

/* ringcast-cat ARGS... 127.0.0.1:PORT (ARGS NULL-terminated). */
static struct sp_child *cat_tls(int port, const char *const *args)
{
    const char *argv[16];
    size_t n = 0;
    for (; args[n] && n < 14; n++)
        argv[n] = args[n];
    char where[32];
    snprintf(where, sizeof(where), "127.0.0.1:%d", port);
    argv[n++] = where;
    argv[n] = NULL;
    return cat_start_env(argv, NULL);
}

/* Both directions through s_server: a line typed into ringcast-cat comes out of s_server, a
 * line typed into s_server out of ringcast-cat; SIGINT ends ringcast-cat with 0. */
static void tls_round_trip(struct sp_child *srv, struct sp_child *c, const char *tag)
{
    char line[64];
    snprintf(line, sizeof(line), "to s_server %s\n", tag);
    cat_write_str(c, line);
    cat_expect_str(srv, line);
    snprintf(line, sizeof(line), "from s_server %s\n", tag);
    cat_write_str(srv, line);
    cat_expect_str(c, line);
    kill(c->pid, SIGINT);
    assert_int_equal(cat_wait(c), 0);
    assert_string_equal(cat_err(c), "");
}

/* --tls --ca: the certificate is for 127.0.0.1 (HOST) and localhost (--servername); --insecure
 * accepts what would not verify. */
static void test_cat_tls_s_server(void **state)
{
    tls_certs();
    int port;
    struct sp_child *srv = s_server("server", NULL, &port);
    tls_round_trip(
        srv, cat_tls(port, (const char *const[]){"--tls", "--ca", tls_file("ca.pem"), NULL}), "1");
    tls_round_trip(srv,
                   cat_tls(port, (const char *const[]){"--tls", "--ca", tls_file("ca.pem"),
                                                       "--servername", "localhost", NULL}),
                   "2");
    tls_round_trip(srv,
                   cat_tls(port, (const char *const[]){"--tls", "--insecure", "--servername",
                                                       "wrong.example", NULL}),
                   "3");
    /* --pub-only: close_notify and FIN once all is sent; s_server then closes, and exit 0. */
    struct sp_child *p = cat_tls(
        port, (const char *const[]){"--tls", "--ca", tls_file("ca.pem"), "--pub-only", NULL});
    cat_write_str(p, "last one\nand the end");
    cat_close_stdin(p);
    cat_expect_str(srv, "last one\nand the end\n");
    assert_int_equal(cat_wait(p), 0);
    assert_string_equal(cat_err(p), "");
}

/* What must not verify exits 1 with one line that says why, before anything is sent. */
static void test_cat_tls_verify_failures(void **state)
{
    tls_certs();
    int port, other_port;
    struct sp_child *srv = s_server("server", NULL, &port);
    struct sp_child *other = s_server("other", NULL, &other_port);
    const struct {
        int port;
        const char *args[6];
        const char *want;
    } cases[] = {
        /* the system's store does not know the test CA */
        {port, {"--tls", NULL}, "unable to get local issuer certificate"},
        {port,
         {"--tls", "--ca", tls_file("ca.pem"), "--servername", "wrong.example", NULL},
         "hostname mismatch"},
        {port,
         {"--tls", "--ca", tls_file("ca.pem"), "--servername", "127.0.0.2", NULL},
         "IP address mismatch"},
        {other_port,
         {"--tls", "--ca", tls_file("ca.pem"), NULL},
         "unable to get local issuer certificate"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sp_child *c = cat_tls(cases[i].port, cases[i].args);
        cat_write_str(c, "never sent\n");
        int code = cat_wait(c);
        const char *err = cat_err(c);
        if (code != 1 || count_lines(err) != 1 || !strstr(err, cases[i].want) ||
            !strstr(err, "TLS handshake failed"))
            fail_msg("case %zu: exit %d, stderr \"%s\"; want exit 1 and one line with \"%s\"", i,
                     code, err, cases[i].want);
        cat_expect_no_more_output(c);
    }
    /* Nothing got through to either server. */
    char buf[64];
    assert_int_equal(read(srv->out, buf, sizeof(buf)), -1);
    assert_int_equal(read(other->out, buf, sizeof(buf)), -1);

    /* A plain listener never answers the ClientHello: the 10 s handshake limit ends it. */
    int lport;
    int lfd = listen_plain(&lport);
    struct sp_child *c = cat_tls(lport, (const char *const[]){"--tls", "--insecure", NULL});
    int fd = accept_within(lfd, c);
    int code = sp_wait(c->pid, 10000 + RC_WAIT_MS);
    c->pid = 0;
    const char *err = cat_err(c);
    if (code != 1 || count_lines(err) != 1 || !strstr(err, "is it a TLS listener?"))
        fail_msg("plain listener: exit %d, stderr \"%s\"", code, err);
    close(fd);
    close(lfd);
}

/* Mutual TLS: s_server asks for a client certificate of the test CA. */
static void test_cat_tls_client_cert(void **state)
{
    tls_certs();
    int port;
    const char *v[] = {"-Verify", "1", "-CAfile", tls_file("ca.pem"), NULL};
    struct sp_child *srv = s_server("server", v, &port);
    tls_round_trip(srv,
                   cat_tls(port, (const char *const[]){"--tls", "--ca", tls_file("ca.pem"),
                                                       "--cert", tls_file("client.pem"), "--key",
                                                       tls_file("client.key"), NULL}),
                   "mtls");
    /* Without one: refused with an alert (TLS 1.3: after the handshake, on the first read). */
    struct sp_child *c =
        cat_tls(port, (const char *const[]){"--tls", "--ca", tls_file("ca.pem"), NULL});
    int code = cat_wait(c);
    const char *err = cat_err(c);
    if (code != 1 || count_lines(err) != 1 || !strstr(err, "certificate required") ||
        !strstr(err, "--cert"))
        fail_msg("no client certificate: exit %d, stderr \"%s\"", code, err);
}

/* --auth: AUTH is the first frame inside TLS, after the handshake. */
static void test_cat_tls_auth(void **state)
{
    tls_certs();
    int port;
    struct sp_child *srv = s_server("server", NULL, &port);
    struct sp_child *c = cat_tls(
        port, (const char *const[]){"--tls", "--ca", tls_file("ca.pem"), "--auth", "tok", NULL});
    cat_write_str(c, "hello\n");
    cat_expect_str(srv, "AUTH tok\nhello\n");
    kill(c->pid, SIGTERM);
    assert_int_equal(cat_wait(c), 0);
}

/* Key files that cannot be used: exit 1 before connecting, one line, no key material. */
static void test_cat_tls_bad_files(void **state)
{
    tls_certs();
    write_text(tls_file("empty.pem"), "");
    const struct {
        const char *args[8];
        const char *want;
    } cases[] = {
        {{"--tls", "--cert", tls_file("client.pem"), "--key", tls_file("server.key"), NULL},
         "does not match"},
        {{"--tls", "--cert", tls_file("client.pem"), "--key", tls_file("missing.key"), NULL},
         "No such file or directory"},
        {{"--tls", "--cert", tls_file("client.key"), "--key", tls_file("client.key"), NULL},
         "--cert"},
        {{"--tls", "--cert", tls_file("client.pem"), "--key", tls_file("client.pem"), NULL},
         "--key"},
        {{"--tls", "--ca", tls_file("empty.pem"), NULL}, "--ca"},
        {{"--tls", "--ca", tls_file("client.key"), NULL}, "--ca"},
    };
    /* Nothing listens there: a file problem must be found before connecting. */
    int port = sp_free_port();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sp_child *c = cat_tls(port, cases[i].args);
        int code = cat_wait(c);
        const char *err = cat_err(c);
        if (code != 1 || count_lines(err) != 1 || !strstr(err, cases[i].want) ||
            strstr(err, "Connection refused") || strstr(err, "PRIVATE KEY") || strstr(err, "BEGIN"))
            fail_msg("case %zu: exit %d, stderr \"%s\"; want exit 1 and one line with \"%s\"", i,
                     code, err, cases[i].want);
    }
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_cat_two_instances_line, cat_teardown),
        cmocka_unit_test_teardown(test_cat_two_instances_len32, cat_teardown),
        cmocka_unit_test_teardown(test_cat_sub_only_prints, cat_teardown),
        cmocka_unit_test_teardown(test_cat_sub_only_len32, cat_teardown),
        cmocka_unit_test_teardown(test_cat_sub_only_ipv6, cat_teardown),
        cmocka_unit_test_teardown(test_cat_max_frame, cat_teardown),
        cmocka_unit_test_teardown(test_cat_pub_only_line, cat_teardown),
        cmocka_unit_test_teardown(test_cat_pub_only_len32, cat_teardown),
        cmocka_unit_test_teardown(test_cat_auth_first, cat_teardown),
        cmocka_unit_test_teardown(test_cat_usage_errors, cat_teardown),
        cmocka_unit_test_teardown(test_cat_help_version, cat_teardown),
        cmocka_unit_test_teardown(test_cat_connection_refused, cat_teardown),
        cmocka_unit_test_teardown(test_cat_tls_s_server, cat_teardown),
        cmocka_unit_test_teardown(test_cat_tls_verify_failures, cat_teardown),
        cmocka_unit_test_teardown(test_cat_tls_client_cert, cat_teardown),
        cmocka_unit_test_teardown(test_cat_tls_auth, cat_teardown),
        cmocka_unit_test_teardown(test_cat_tls_bad_files, cat_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, tls_group_teardown);
}
