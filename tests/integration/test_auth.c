/*
 * Token authentication (--auth-file, --auth-timeout, the AUTH frame): start-up refusals of a bad
 * file, AUTH in both framings (split, or followed by data in one segment), each failure reason
 * (log line, metric, the client closed, nothing relayed), roles intersected with the listener's,
 * noauth listeners, the timeout, the slow-down of repeated failures, SIGHUP reload and
 * revocation, and a drain that unauthenticated clients must not hold up. Every test also checks
 * that no token ever shows in the server's output (run with -v) or in /metrics.
 *
 * A successful AUTH gets no reply, so the tests wait for ringcast_auth_successes_total instead.
 * Failing clients connect from their own 127.0.0.N address wherever the slow-down of repeated
 * failures from one address is not what is tested.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define RUN_MS 10000
#define QUIET_MS 300 /* a negative check: passing it proves nothing, failing it is a real error */

#define TOK_PUB "Pub-7hQ2xW9zLr"
#define TOK_SUB "Sub-K3vN8pYt2m"
#define TOK_SUB2 "Sub2-Xa91Bc77Qe"
#define TOK_SUB3 "Sub3-Lm40Rt55Zu"
#define TOK_BOTH "Both-Jd6Fg2Hs8k"
#define TOK_NEW "New-Wq3Er5Ty7Ui"
#define TOK_BAD "Guess-Zz0Yy9Xx8"

/* Every token a test uses, good or bad: none may ever show in output or /metrics. The run of
 * x is part of the 256- and 257-byte tokens. */
static const char *const secrets[] = {TOK_PUB,  TOK_SUB,        TOK_SUB2,
                                      TOK_SUB3, TOK_BOTH,       TOK_NEW,
                                      TOK_BAD,  "Line2-Hid9Qq", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};

static const char base_file[] = "# ringcast tokens\n"
                                "\n"
                                "pub " TOK_PUB "\n"
                                "sub " TOK_SUB "\n"
                                "sub " TOK_SUB2 "\n"
                                "sub " TOK_SUB3 "\n"
                                "both " TOK_BOTH "\n";

/* ------------------------------------------------------------------ helpers */

/* Auth files made by a test, removed by its teardown. */
static char files[16][256];
static int nfiles;

static void write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail_msg("writing an auth file: %s", strerror(errno));
        data += n;
        len -= (size_t)n;
    }
}

/* A new auth file (mode 0600) holding @len bytes of @content; its path lives until teardown. */
static const char *auth_file_n(const char *content, size_t len)
{
    if (nfiles == 16)
        fail_msg("too many auth files");
    char *path = files[nfiles++];
    int fd = sp_tmp_file(path, sizeof(files[0]), "auth");
    write_all(fd, content, len);
    close(fd);
    return path;
}

static const char *auth_file(const char *content)
{
    return auth_file_n(content, strlen(content));
}

/* Replaces the file at @path at once (rename), with @content and @mode. */
static void replace_file(const char *path, const char *content, mode_t mode)
{
    char tmp[256];
    int fd = sp_tmp_file(tmp, sizeof(tmp), "auth-new");
    write_all(fd, content, strlen(content));
    close(fd);
    assert_int_equal(chmod(tmp, mode), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static int teardown(void **state)
{
    int r = rc_teardown(state);
    for (int i = 0; i < nfiles; i++)
        unlink(files[i]);
    nfiles = 0;
    return r;
}

#define FAILURES(r) "ringcast_auth_failures_total{reason=\"" r "\"}"
#define SUCCESSES "ringcast_auth_successes_total"

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

/* A relay with --auth-file, -v (so that every relayed frame is logged) and /metrics. */
struct asrv {
    struct rc_server *s;
    int mport;
    bool len32;
    double ok; /* successful AUTHs so far */
    const char *path;
};

static struct asrv start_auth_file(const char *path, const char *const *extra)
{
    const char *argv[40];
    size_t n = 0;
    struct asrv a = {.path = path};
    argv[n++] = "-v";
    argv[n++] = "--metrics";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--auth-file";
    argv[n++] = path;
    for (size_t i = 0; extra && extra[i] && n < 39; i++) {
        argv[n++] = extra[i];
        if (!strcmp(extra[i], "len32"))
            a.len32 = true;
    }
    argv[n] = NULL;
    struct rc_opts o = {.argv = argv};
    a.s = rc_start_ex(&o);
    char line[256];
    if (!rc_log_wait(a.s, 0, "Metrics at: http://127.0.0.1:", RC_WAIT_MS) ||
        !rc_log_find(a.s, 0, "Metrics at: http://127.0.0.1:", line, sizeof(line)))
        fail_msg("no \"Metrics at:\" line");
    a.mport = atoi(strstr(line, "http://127.0.0.1:") + strlen("http://127.0.0.1:"));
    return a;
}

static struct asrv start_auth(const char *content, const char *const *extra)
{
    return start_auth_file(auth_file(content), extra);
}

/* A client of listener @port (0: the default one) from 127.0.0.@host (0: the kernel's choice). */
static int client(struct asrv *a, int port, int host)
{
    char local[32];
    snprintf(local, sizeof(local), "127.0.0.%d", host);
    return rc_connect_opts(a->s, "127.0.0.1",
                           &(struct rc_sockopts){.port = port, .local = host ? local : NULL});
}

/* One frame of @payload in the relay's framing (line: with "\n"); returns its length. */
static size_t make_frame(const struct asrv *a, char *buf, size_t cap, const char *payload)
{
    size_t n = strlen(payload);
    assert_true(n + 5 <= cap);
    if (a->len32)
        return rc_make_len32((uint8_t *)buf, payload, (uint32_t)n);
    memcpy(buf, payload, n);
    buf[n] = '\n';
    return n + 1;
}

static void send_frame(const struct asrv *a, int fd, const char *payload)
{
    char buf[1024];
    rc_send(fd, buf, make_frame(a, buf, sizeof(buf), payload));
}

static void expect_frame(const struct asrv *a, int fd, const char *payload)
{
    char buf[1024];
    rc_expect(fd, buf, make_frame(a, buf, sizeof(buf), payload));
}

static void send_auth(const struct asrv *a, int fd, const char *token)
{
    char f[512];
    snprintf(f, sizeof(f), "AUTH %s", token);
    send_frame(a, fd, f);
}

/* Waits until the relay has taken @n successful AUTHs in all. */
static void wait_ok(struct asrv *a, double n)
{
    a->ok = n;
    rc_metrics_wait(a->s, a->mport, SUCCESSES, n);
}

/* A client of listener @port that authenticated with @token (and was registered then). */
static int authed(struct asrv *a, int port, const char *token)
{
    int fd = client(a, port, 0);
    send_auth(a, fd, token);
    wait_ok(a, a->ok + 1);
    return fd;
}

/* @fd's AUTH fails with @reason: the log line, and the connection closed with nothing sent. */
static void expect_failed(struct asrv *a, size_t mark, int fd, const char *reason)
{
    char what[128];
    snprintf(what, sizeof(what), "disconnected (auth failed: %s).", reason);
    rc_wait_client_log(a->s, mark, rc_port_of(fd), what);
    rc_expect_closed(fd);
}

/* No token in anything the server printed or serves: stdout (-v), stderr and /metrics. */
static void expect_no_secrets(struct asrv *a)
{
    char *m = rc_metrics_get(a->s, a->mport);
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        if (rc_log_count(a->s, 0, secrets[i]) || rc_err_contains(a->s, secrets[i]) ||
            strstr(m, secrets[i])) {
            rc_dump(a->s);
            fail_msg("the token %s shows in the server's output or /metrics:\n%s", secrets[i], m);
        }
    }
    assert_int_equal(rc_log_count(a->s, 0, "said: AUTH"), 0);
    free(m);
}

/* Waits for a line containing @needle on stdout or stderr. */
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

/* Runs the relay with @argv; checks exit @want, stderr naming every @need, no start line and no
 * token in its output. */
static void expect_refused(const char *const *argv, int want, const char *const *need)
{
    struct rc_opts o = {.argv = argv};
    char *out, *err;
    int st = rc_run(&o, RUN_MS, &out, &err);
    bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == want && !strstr(out, "started at");
    for (size_t i = 0; need && need[i]; i++)
        ok = ok && strstr(err, need[i]);
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        ok = ok && !strstr(err, secrets[i]) && !strstr(out, secrets[i]);
    if (!ok)
        fail_msg("%s %s %s: status 0x%x (want exit %d), stderr \"%s\", stdout \"%s\"", argv[0],
                 argv[1], argv[2] ? argv[2] : "", st, want, err, out);
    free(out);
    free(err);
}

/* ------------------------------------------------------------------ start-up */

/* A file readable or writable by others, missing, not a regular file, or with a syntax error:
 * exit 1 naming the file (and the line), never the token. */
static void test_auth_bad_files(void **state)
{
    const char *path = auth_file(base_file);
    assert_int_equal(chmod(path, 0644), 0);
    const char *argv[] = {"--auth-file", path, NULL};
    expect_refused(argv, 1, (const char *const[]){path, "group or others", "0644", NULL});
    assert_int_equal(chmod(path, 0602), 0);
    expect_refused(argv, 1, (const char *const[]){path, NULL});
    assert_int_equal(chmod(path, 0600), 0);

    char missing[300];
    snprintf(missing, sizeof(missing), "%s-missing", path);
    argv[1] = missing;
    expect_refused(argv, 1, (const char *const[]){missing, strerror(ENOENT), NULL});

    char dir[256];
    snprintf(dir, sizeof(dir), "%s/ringcast-test-authdir-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
    argv[1] = dir;
    expect_refused(argv, 1, (const char *const[]){dir, NULL});
    rmdir(dir);

    char huge[400] = "pub ";
    memset(huge + 4, 'x', 257);
    strcpy(huge + 4 + 257, "\n");
    static const struct {
        const char *content;
        const char *line;
    } syntax[] = {
        {"both " TOK_BOTH "\nfoo " TOK_SUB "\n", "line 2"},
        {"# c\n\n   \n\tpub\n", "line 4"},
        {"sub " TOK_SUB " " TOK_SUB2 "\n", "line 1"},
        {"pub " TOK_PUB "\nboth " TOK_BOTH "\nsub " TOK_PUB "\n", "line 3"},
        {"pub Line2-Hid9Qq\x7f\n", "line 1"},
        {"pub " TOK_PUB "\n\nsub Line2-\x80Hid9Qq\n", "line 3"},
        {NULL, "line 1"}, /* the 257-byte token */
    };
    for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++) {
        argv[1] = auth_file(syntax[i].content ? syntax[i].content : huge);
        expect_refused(argv, 1, (const char *const[]){argv[1], syntax[i].line, NULL});
        unlink(argv[1]);
        nfiles--;
    }

    /* 4096 tokens are fine, 4097 are not. */
    size_t cap = 4097 * 32, len = 0;
    char *many = malloc(cap);
    assert_non_null(many);
    for (int i = 0; i < 4097; i++)
        len += (size_t)snprintf(many + len, cap - len, "sub many-%05d\n", i);
    argv[1] = auth_file_n(many, len);
    expect_refused(argv, 1, (const char *const[]){argv[1], NULL});
    struct asrv a = start_auth_file(auth_file_n(many, len - strlen("sub many-04096\n")), NULL);
    rc_metrics_wait(a.s, a.mport, "ringcast_auth_tokens", 4096);
    free(many);
}

/* Comments, blank lines, spaces and tabs around, CRLF: all accepted, and the tokens exactly. */
static void test_auth_file_format(void **state)
{
    char longest[257], text[512];
    memset(longest, 'x', 256); /* the longest token */
    longest[256] = '\0';
    snprintf(text, sizeof(text),
             "  # a comment\r\n\r\n\t  \r\n\tpub " TOK_PUB "  \r\n sub " TOK_SUB
             "\t\n# sub " TOK_SUB2 "\nsub %s\r\n",
             longest);
    struct asrv a = start_auth(text, NULL);
    rc_metrics_wait(a.s, a.mport, "ringcast_auth_tokens", 3);
    int sub = authed(&a, 0, TOK_SUB);
    int sub2 = authed(&a, 0, longest);
    int pub = authed(&a, 0, TOK_PUB);
    send_frame(&a, pub, "hello");
    expect_frame(&a, sub, "hello");
    expect_frame(&a, sub2, "hello");
    size_t mark = rc_log_mark(a.s);
    int c = client(&a, 0, 0);
    send_auth(&a, c, TOK_SUB2); /* commented out */
    expect_failed(&a, mark, c, "bad token");
    expect_no_secrets(&a);
}

/* --auth-timeout must be a positive number of seconds: exit 2 otherwise. */
static void test_auth_timeout_values(void **state)
{
    const char *path = auth_file(base_file);
    static const char *const bad[] = {"0", "abc", "-1", "", "0.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = {"--auth-file", path, "--auth-timeout", bad[i], NULL};
        expect_refused(argv, 2, (const char *const[]){"--auth-timeout", NULL});
    }
    const char *const ok[] = {"--auth-timeout", "0.5", NULL};
    struct asrv a = start_auth_file(path, ok);
    expect_no_secrets(&a);
}

/* ------------------------------------------------------------------ relaying */

/*
 * A pub token publishes to a sub token's subscriber, AUTH first, never relayed, never answered;
 * a client is a receiver only from its AUTH on; AUTH followed by frames in one segment.
 */
static void relay_case(const char *const *extra)
{
    struct asrv a = start_auth(base_file, extra);
    int sub = authed(&a, 0, TOK_SUB);
    int late = client(&a, 0, 0);
    int pub = authed(&a, 0, TOK_PUB);
    for (int i = 0; i < 20; i++) {
        char f[64];
        snprintf(f, sizeof(f), "frame %d", i);
        send_frame(&a, pub, f);
        expect_frame(&a, sub, f);
    }
    expect_nothing(late, "a client that did not AUTH yet");

    /* Registered at its AUTH: it gets what comes after, nothing before. */
    send_auth(&a, late, TOK_SUB2);
    wait_ok(&a, 3);
    send_frame(&a, pub, "after late");
    expect_frame(&a, sub, "after late");
    expect_frame(&a, late, "after late");

    /* AUTH and frames in one segment: the frames are ordinary ones, the AUTH is not relayed. */
    char seg[256];
    size_t n = 0;
    char f[64];
    snprintf(f, sizeof(f), "AUTH %s", TOK_BOTH);
    n += make_frame(&a, seg + n, sizeof(seg) - n, f);
    n += make_frame(&a, seg + n, sizeof(seg) - n, "one");
    n += make_frame(&a, seg + n, sizeof(seg) - n, "two");
    int both = client(&a, 0, 0);
    rc_send(both, seg, n);
    expect_frame(&a, sub, "one");
    expect_frame(&a, sub, "two");
    expect_frame(&a, late, "one");
    expect_frame(&a, late, "two");
    wait_ok(&a, 4);
    send_frame(&a, pub, "to both");
    expect_frame(&a, both, "to both");
    expect_frame(&a, sub, "to both");
    expect_frame(&a, late, "to both");

    /* A pub token's client is sent nothing: no reply to AUTH, no frames. */
    expect_nothing(pub, "the pub-only publisher");
    expect_nothing(sub, "the subscriber");
    expect_no_secrets(&a);
}

/* The clients that wait before their AUTH must not meet the timeout on a loaded machine. */
static void test_auth_relay_line(void **state)
{
    static const char *const extra[] = {"--auth-timeout", "60", NULL};
    relay_case(extra);
}

static void test_auth_relay_len32(void **state)
{
    static const char *const extra[] = {"--framing", "len32", "--auth-timeout", "60", NULL};
    relay_case(extra);
}

/* AUTH byte by byte (the len32 header too), and with CRLF in line mode. */
static void split_case(const char *const *extra)
{
    struct asrv a = start_auth(base_file, extra);
    int sub = authed(&a, 0, TOK_SUB);
    int pub = client(&a, 0, 0);
    char f[512], buf[512];
    snprintf(f, sizeof(f), "AUTH %s", TOK_PUB);
    size_t n = make_frame(&a, buf, sizeof(buf), f);
    for (size_t i = 0; i < n; i++) {
        rc_send(pub, buf + i, 1);
        sp_nap_ms(3); /* separate segments; nothing waits on it */
    }
    wait_ok(&a, 2);
    send_frame(&a, pub, "split");
    expect_frame(&a, sub, "split");
    if (!a.len32) {
        int crlf = client(&a, 0, 0);
        rc_send_str(crlf, "AUTH " TOK_SUB2 "\r\n");
        wait_ok(&a, 3);
        send_frame(&a, pub, "crlf");
        expect_frame(&a, crlf, "crlf");
        expect_frame(&a, sub, "crlf");
    }
    expect_no_secrets(&a);
}

static void test_auth_split_line(void **state)
{
    split_case(NULL);
}

static void test_auth_split_len32(void **state)
{
    static const char *const extra[] = {"--framing", "len32", NULL};
    split_case(extra);
}

/* ------------------------------------------------------------------ failures */

/*
 * Each reason: its log line, its counter, the client closed with nothing sent, nothing it sent
 * relayed; a client that never sent AUTH meanwhile gets nothing at all.
 */
static void test_auth_failures(void **state)
{
    static const char *const extra[] = {"--listen", "127.0.0.1:0,role=pub", "--auth-timeout", "60",
                                        NULL};
    struct asrv a = start_auth(base_file, extra);
    int pub_port = rc_listener_port(a.s, "role=pub", NULL, 0, NULL, 0);
    int watcher = client(&a, 0, 0);
    int sub = authed(&a, 0, TOK_SUB);
    int pub = authed(&a, 0, TOK_PUB);

    char huge[400] = "AUTH ";
    memset(huge + 5, 'a', 300);
    strcpy(huge + 305, "\nleak\n");
    const struct {
        const char *send, *reason;
    } cases[] = {
        {"hello\nleak\n", "no AUTH"},
        {huge, "malformed AUTH"},
        {"AUTH ab\x01"
         "cd\nleak\n",
         "malformed AUTH"},
        {"AUTH Line2-Hid9Qq x\nleak\n", "malformed AUTH"},
        {"AUTH \nleak\n", "malformed AUTH"},
        {"AUTH " TOK_BAD "\nleak\n", "bad token"},
        {"AUTH " TOK_SUB "\nleak\n", "role not allowed here"}, /* on the role=pub listener */
    };
    for (int i = 0; i < 7; i++) {
        size_t mark = rc_log_mark(a.s);
        int c = client(&a, i == 6 ? pub_port : 0, 10 + i); /* each a first failure */
        rc_send_lenient(c, cases[i].send, strlen(cases[i].send), RC_IO_MS);
        expect_failed(&a, mark, c, cases[i].reason);
    }
    /* Nothing of theirs was relayed: the next frame is the first the subscriber gets. */
    send_frame(&a, pub, "marker");
    expect_frame(&a, sub, "marker");

    /* A client that closes before its first frame is an ordinary disconnect, not a failure. */
    size_t mark = rc_log_mark(a.s);
    int port = rc_close(client(&a, 0, 20));
    rc_wait_client_log(a.s, mark, port, "disconnected.");

    char *m = rc_metrics_get(a.s, a.mport);
    bool ok = rc_metrics_sample(m, FAILURES("missing")) == 1 &&
              rc_metrics_sample(m, FAILURES("malformed")) == 4 &&
              rc_metrics_sample(m, FAILURES("bad_token")) == 1 &&
              rc_metrics_sample(m, FAILURES("role")) == 1 &&
              rc_metrics_sample(m, FAILURES("timeout")) == 0 &&
              rc_metrics_sample(m, SUCCESSES) == 2 &&
              rc_metrics_sample(m, "ringcast_disconnects_total{reason=\"auth_failed\"}") == 7 &&
              rc_metrics_sample(m, "ringcast_disconnects_total{reason=\"token_revoked\"}") == 0 &&
              rc_metrics_sample(m, "ringcast_auth_tokens") == 5 &&
              rc_metrics_sample(m, "ringcast_auth_reloads_total") == 0 &&
              rc_metrics_sample(m, "ringcast_auth_reload_failures_total") == 0;
    if (!ok)
        fail_msg("unexpected counters after 7 failures:\n%s", m);
    free(m);
    expect_nothing(watcher, "a client that never sent AUTH");
    expect_nothing(pub, "the pub-only publisher");
    expect_no_secrets(&a);
}

/* len32: a first frame that is not AUTH, and an AUTH frame announced too long. */
static void test_auth_failures_len32(void **state)
{
    static const char *const extra[] = {"--framing", "len32", NULL};
    struct asrv a = start_auth(base_file, extra);
    int sub = authed(&a, 0, TOK_SUB);
    int pub = authed(&a, 0, TOK_PUB);
    uint8_t buf[2048];
    size_t mark = rc_log_mark(a.s);
    int c = client(&a, 0, 10);
    size_t n = rc_make_len32(buf, "hello", 5);
    n += rc_make_len32(buf + n, "leak", 4);
    rc_send(c, buf, n);
    expect_failed(&a, mark, c, "no AUTH");

    char payload[1000];
    memcpy(payload, "AUTH ", 5);
    memset(payload + 5, 'b', sizeof(payload) - 5);
    mark = rc_log_mark(a.s);
    c = client(&a, 0, 11);
    n = rc_make_len32(buf, payload, sizeof(payload));
    rc_send_lenient(c, buf, n, RC_IO_MS);
    expect_failed(&a, mark, c, "malformed AUTH");

    mark = rc_log_mark(a.s);
    c = client(&a, 0, 12);
    send_auth(&a, c, TOK_BAD);
    expect_failed(&a, mark, c, "bad token");

    send_frame(&a, pub, "marker");
    expect_frame(&a, sub, "marker");
    rc_metrics_wait(a.s, a.mport, "ringcast_disconnects_total{reason=\"auth_failed\"}", 3);
    expect_no_secrets(&a);
}

/* ------------------------------------------------------------------ roles */

/*
 * A client's role is its token's intersected with its listener's; a noauth listener needs no
 * AUTH at all.
 */
static void test_auth_roles(void **state)
{
    static const char *const extra[] = {
        "--listen", "127.0.0.1:0,role=pub",        "--listen", "127.0.0.1:0,role=sub",
        "--listen", "127.0.0.1:0,role=sub,noauth", "--listen", "127.0.0.1:0,noauth",
        NULL};
    struct asrv a = start_auth(base_file, extra);
    int pub_port = rc_listener_port(a.s, "role=pub", NULL, 0, NULL, 0);
    int sub_port = rc_listener_port(a.s, "role=sub", NULL, 0, NULL, 0);
    int open_sub_port = rc_listener_port(a.s, "role=sub,noauth", NULL, 0, NULL, 0);
    int open_port = rc_listener_port(a.s, "role=both,noauth", NULL, 0, NULL, 0);

    /* pub ∩ sub and sub ∩ pub: nothing left. */
    size_t mark = rc_log_mark(a.s);
    int c = client(&a, pub_port, 10);
    send_auth(&a, c, TOK_SUB);
    expect_failed(&a, mark, c, "role not allowed here");
    c = client(&a, sub_port, 11);
    send_auth(&a, c, TOK_PUB);
    expect_failed(&a, mark, c, "role not allowed here");
    rc_metrics_wait(a.s, a.mport, FAILURES("role"), 2);

    int both_on_sub = authed(&a, sub_port, TOK_BOTH); /* both ∩ sub = sub */
    int sub_on_both = authed(&a, 0, TOK_SUB);         /* sub ∩ both = sub */
    int pub_on_both = authed(&a, 0, TOK_PUB);         /* pub ∩ both = pub */
    int both_on_pub = authed(&a, pub_port, TOK_BOTH); /* both ∩ pub = pub */
    int both = authed(&a, 0, TOK_BOTH);
    int open_sub = rc_connect_to(a.s, "127.0.0.1", open_sub_port);
    int open = rc_connect_to(a.s, "127.0.0.1", open_port);

    /* One sender at a time, so that the order is known. No AUTH on a noauth listener: its
     * client's first frame is data. */
    const struct {
        int from;
        const char *frame;
    } sends[] = {{pub_on_both, "p1"}, {both_on_pub, "p2"}, {open, "p3"}, {both, "p4"}};
    const int receivers[] = {both_on_sub, sub_on_both, both, open_sub, open};
    for (size_t i = 0; i < sizeof(sends) / sizeof(sends[0]); i++) {
        send_frame(&a, sends[i].from, sends[i].frame);
        for (size_t r = 0; r < sizeof(receivers) / sizeof(receivers[0]); r++)
            if (receivers[r] != sends[i].from)
                expect_frame(&a, receivers[r], sends[i].frame);
    }
    expect_nothing(pub_on_both, "pub token on the default listener");
    expect_nothing(both_on_pub, "both token on a role=pub listener");

    /* Sub-only by token or by listener: sending after AUTH is a protocol violation. */
    mark = rc_log_mark(a.s);
    send_frame(&a, both_on_sub, "x");
    rc_wait_client_log(a.s, mark, rc_port_of(both_on_sub),
                       "disconnected (protocol violation: sent data on a sub-only listener).");
    rc_expect_closed(both_on_sub);
    send_frame(&a, sub_on_both, "y");
    rc_wait_client_log(a.s, mark, rc_port_of(sub_on_both), "disconnected (protocol violation");
    rc_expect_closed(sub_on_both);
    /* ... also in the segment of its AUTH. */
    c = client(&a, 0, 0);
    rc_send_lenient(c, "AUTH " TOK_SUB2 "\nz\n", strlen("AUTH " TOK_SUB2 "\nz\n"), RC_IO_MS);
    rc_wait_client_log(a.s, mark, rc_port_of(c), "disconnected (protocol violation");
    rc_expect_closed(c);
    rc_metrics_wait(a.s, a.mport, "ringcast_protocol_violations_total{reason=\"sub_sent\"}", 3);

    send_frame(&a, pub_on_both, "after");
    expect_frame(&a, both, "after");
    expect_frame(&a, open_sub, "after");
    expect_frame(&a, open, "after");
    expect_no_secrets(&a);
}

/* ------------------------------------------------------------------ timeout and slow-down */

/*
 * --auth-timeout 0.5: a silent client and one with half an AUTH are closed after it, counted as
 * timeout; an authenticated one stays; the timeout counts as a failure of its address.
 */
static void test_auth_timeout(void **state)
{
    static const char *const extra[] = {"--auth-timeout", "0.5", "--listen", "127.0.0.1:0,noauth",
                                        NULL};
    struct asrv a = start_auth(base_file, extra);
    int sub = authed(&a, 0, TOK_SUB);
    int pub = authed(&a, 0, TOK_PUB);
    int open = rc_connect_to(
        a.s, "127.0.0.1",
        rc_listener_port(a.s, "role=both,noauth", NULL, 0, NULL, 0)); /* no timeout there */

    size_t mark = rc_log_mark(a.s);
    int64_t t0 = rc_now_ms();
    int silent = client(&a, 0, 10);
    int half = client(&a, 0, 11);
    rc_send_str(half, "AUTH " TOK_SUB2);
    expect_failed(&a, mark, silent, "timeout");
    int64_t waited = rc_now_ms() - t0;
    expect_failed(&a, mark, half, "timeout");
    /* Not before the timeout (100 ms ticks), and well within the generous bound. */
    if (waited < 400 || waited > 8000)
        fail_msg("the silent client was closed %lld ms after it connected (timeout 0.5 s)",
                 (long long)waited);
    rc_metrics_wait(a.s, a.mport, FAILURES("timeout"), 2);
    rc_metrics_wait(a.s, a.mport, "ringcast_disconnects_total{reason=\"auth_failed\"}", 2);

    /* The authenticated clients outlived the timeout (theirs would have come first). */
    send_frame(&a, pub, "still here");
    expect_frame(&a, sub, "still here");
    expect_frame(&a, open, "still here");

    /* The timeout was 127.0.0.10's first failure: its second is closed 250 ms later. */
    mark = rc_log_mark(a.s);
    int c = client(&a, 0, 10);
    t0 = rc_now_ms();
    send_auth(&a, c, TOK_BAD);
    expect_failed(&a, mark, c, "bad token");
    waited = rc_now_ms() - t0;
    if (waited < 150)
        fail_msg("a second failure after a timeout was closed after %lld ms (want 250 ms)",
                 (long long)waited);
    expect_no_secrets(&a);
}

/* Sends a bad token from 127.0.0.@host; returns the ms until the relay closed the connection. */
static int64_t fail_once(struct asrv *a, int host)
{
    size_t mark = rc_log_mark(a->s);
    int c = client(a, 0, host);
    int64_t t0 = rc_now_ms();
    send_auth(a, c, TOK_BAD);
    if (rc_recv_until_eof(c, NULL, 0, RC_IO_MS) != 0)
        fail_msg("a client with a bad token was not closed (or was sent data)");
    int64_t waited = rc_now_ms() - t0;
    rc_wait_client_log(a->s, mark, rc_port_of(c), "disconnected (auth failed: bad token).");
    rc_close(c);
    return waited;
}

/*
 * Repeated failures from one address are closed later and later (250 ms, 500 ms, 1 s, 2 s from
 * the 2nd on); another address's first failure is closed at once, before a slowed one.
 */
static void test_auth_slowdown(void **state)
{
    struct asrv a = start_auth(base_file, NULL);
    int64_t w[5];
    for (int i = 0; i < 4; i++)
        w[i] = fail_once(&a, 1);
    static const int64_t floor[] = {0, 150, 400, 900};
    for (int i = 1; i < 4; i++)
        if (w[i] < floor[i] || w[i] > 8000)
            fail_msg("failure %d from 127.0.0.1 closed after %lld ms, want at least %lld ms "
                     "(delays: %lld %lld %lld %lld)",
                     i + 1, (long long)w[i], (long long)floor[i], (long long)w[0], (long long)w[1],
                     (long long)w[2], (long long)w[3]);

    /* The 5th (2 s) from 127.0.0.1, then a first one from 127.0.0.2: that one closes first. */
    size_t mark = rc_log_mark(a.s);
    int slow = client(&a, 0, 1);
    int64_t t0 = rc_now_ms();
    send_auth(&a, slow, TOK_BAD);
    int fresh = client(&a, 0, 2);
    send_auth(&a, fresh, TOK_BAD);
    if (rc_recv_until_eof(fresh, NULL, 0, RC_IO_MS) != 0)
        fail_msg("127.0.0.2's bad token: not closed");
    char b[8];
    if (rc_recv_now(slow, b, sizeof(b)) != 0)
        fail_msg("127.0.0.1's 5th failure was closed before 127.0.0.2's first (%lld ms)",
                 (long long)(rc_now_ms() - t0));
    if (rc_recv_until_eof(slow, NULL, 0, RC_IO_MS) != 0)
        fail_msg("127.0.0.1's 5th failure: not closed");
    w[4] = rc_now_ms() - t0;
    rc_wait_client_log(a.s, mark, rc_port_of(slow), "disconnected (auth failed: bad token).");
    rc_wait_client_log(a.s, mark, rc_port_of(fresh), "disconnected (auth failed: bad token).");
    if (w[4] < 1900)
        fail_msg("failure 5 from 127.0.0.1 closed after %lld ms, want 2 s", (long long)w[4]);
    rc_metrics_wait(a.s, a.mport, FAILURES("bad_token"), 6);
    rc_metrics_wait(a.s, a.mport, "ringcast_disconnects_total{reason=\"auth_failed\"}", 6);
    /* A good token from the slowed address is not refused. */
    int ok = authed(&a, 0, TOK_SUB);
    (void)ok;
    expect_no_secrets(&a);
}

/*
 * SIGTERM: a client still to AUTH, or waiting for its delayed close, has nothing queued, so it
 * does not hold the drain: the relay exits long before --drain-timeout.
 */
static void test_auth_drain(void **state)
{
    static const char *const extra[] = {"--auth-timeout", "60", "--drain-timeout", "30", NULL};
    struct asrv a = start_auth(base_file, extra);
    int sub = authed(&a, 0, TOK_SUB);
    int pending = client(&a, 0, 0);
    fail_once(&a, 1);
    int delayed = client(&a, 0, 1); /* its 2nd failure: closed 250 ms later */
    send_auth(&a, delayed, TOK_BAD);
    rc_metrics_wait(a.s, a.mport, FAILURES("bad_token"), 2);
    int64_t t0 = rc_now_ms();
    rc_signal(a.s, SIGTERM);
    int st = rc_wait_exit(a.s, 12000);
    int64_t took = rc_now_ms() - t0;
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || took > 10000) {
        rc_dump(a.s);
        fail_msg("SIGTERM with a client yet to AUTH: status 0x%x after %lld ms (--drain-timeout "
                 "30; nothing is queued for anyone)",
                 st, (long long)took);
    }
    assert_int_equal(rc_recv_until_eof(pending, NULL, 0, RC_IO_MS), 0);
    assert_int_equal(rc_recv_until_eof(delayed, NULL, 0, RC_IO_MS), 0);
    assert_int_equal(rc_recv_until_eof(sub, NULL, 0, RC_IO_MS), 0);
}

/* ------------------------------------------------------------------ SIGHUP */

/*
 * SIGHUP re-reads the file: clients whose token is gone or has another role are disconnected
 * (token revoked), the others stay; new connections use the new tokens. A bad new file (syntax,
 * mode) keeps the old tokens and the relay runs on.
 */
static void test_auth_reload(void **state)
{
    struct asrv a = start_auth(base_file, NULL);
    int pub = authed(&a, 0, TOK_PUB);
    int gone = authed(&a, 0, TOK_SUB);     /* removed */
    int kept = authed(&a, 0, TOK_SUB2);    /* same role */
    int changed = authed(&a, 0, TOK_SUB3); /* sub -> both */
    int both = authed(&a, 0, TOK_BOTH);    /* same role */

    replace_file(a.path,
                 "pub " TOK_PUB "\nsub " TOK_SUB2 "\nboth " TOK_SUB3 "\nboth " TOK_BOTH
                 "\nsub " TOK_NEW "\n",
                 0600);
    size_t mark = rc_log_mark(a.s);
    rc_signal(a.s, SIGHUP);
    if (!rc_log_wait(a.s, mark, "SIGHUP: auth file reloaded (5 tokens); 2 client(s) revoked",
                     RC_WAIT_MS))
        fail_msg("no reload line");
    rc_wait_client_log(a.s, mark, rc_port_of(gone), "disconnected (token revoked).");
    rc_wait_client_log(a.s, mark, rc_port_of(changed), "disconnected (token revoked).");
    rc_expect_closed(gone);
    rc_expect_closed(changed);
    send_frame(&a, pub, "after reload");
    expect_frame(&a, kept, "after reload");
    expect_frame(&a, both, "after reload");

    /* The removed token is refused now, the new one taken. */
    mark = rc_log_mark(a.s);
    int c = client(&a, 0, 10);
    send_auth(&a, c, TOK_SUB);
    expect_failed(&a, mark, c, "bad token");
    int fresh = authed(&a, 0, TOK_NEW);
    send_frame(&a, both, "new");
    expect_frame(&a, fresh, "new");
    expect_frame(&a, kept, "new");
    char *m = rc_metrics_get(a.s, a.mport);
    bool ok = rc_metrics_sample(m, "ringcast_auth_reloads_total") == 1 &&
              rc_metrics_sample(m, "ringcast_auth_reload_failures_total") == 0 &&
              rc_metrics_sample(m, "ringcast_auth_tokens") == 5 &&
              rc_metrics_sample(m, "ringcast_disconnects_total{reason=\"token_revoked\"}") == 2 &&
              rc_metrics_sample(m, "ringcast_disconnects_total{reason=\"auth_failed\"}") == 1;
    if (!ok)
        fail_msg("unexpected counters after a reload:\n%s", m);
    free(m);

    /* A syntax error, then a mode 0644: not reloaded, the previous tokens stay. */
    replace_file(a.path, "pub " TOK_PUB "\nsubb Line2-Hid9Qq\n", 0600);
    mark = rc_log_mark(a.s);
    rc_signal(a.s, SIGHUP);
    wait_out_or_err(a.s, mark, "SIGHUP: auth file not reloaded: ");
    rc_metrics_wait(a.s, a.mport, "ringcast_auth_reload_failures_total", 1);
    assert_true(rc_err_contains(a.s, "line 2") || rc_log_count(a.s, mark, "line 2"));
    replace_file(a.path, "pub " TOK_PUB "\n", 0644);
    rc_signal(a.s, SIGHUP);
    rc_metrics_wait(a.s, a.mport, "ringcast_auth_reload_failures_total", 2);
    wait_out_or_err(a.s, mark, "group or others");
    assert_true(rc_alive(a.s));
    int again = authed(&a, 0, TOK_NEW);
    send_frame(&a, pub, "kept");
    expect_frame(&a, again, "kept");
    expect_frame(&a, kept, "kept");
    expect_frame(&a, fresh, "kept");
    m = rc_metrics_get(a.s, a.mport);
    ok = rc_metrics_sample(m, "ringcast_auth_reloads_total") == 1 &&
         rc_metrics_sample(m, "ringcast_auth_tokens") == 5 &&
         rc_metrics_sample(m, "ringcast_disconnects_total{reason=\"token_revoked\"}") == 2;
    if (!ok)
        fail_msg("unexpected counters after two failed reloads:\n%s", m);
    free(m);
    expect_no_secrets(&a);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_auth_bad_files, teardown),
        cmocka_unit_test_teardown(test_auth_file_format, teardown),
        cmocka_unit_test_teardown(test_auth_timeout_values, teardown),
        cmocka_unit_test_teardown(test_auth_relay_line, teardown),
        cmocka_unit_test_teardown(test_auth_relay_len32, teardown),
        cmocka_unit_test_teardown(test_auth_split_line, teardown),
        cmocka_unit_test_teardown(test_auth_split_len32, teardown),
        cmocka_unit_test_teardown(test_auth_failures, teardown),
        cmocka_unit_test_teardown(test_auth_failures_len32, teardown),
        cmocka_unit_test_teardown(test_auth_roles, teardown),
        cmocka_unit_test_teardown(test_auth_timeout, teardown),
        cmocka_unit_test_teardown(test_auth_slowdown, teardown),
        cmocka_unit_test_teardown(test_auth_drain, teardown),
        cmocka_unit_test_teardown(test_auth_reload, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
