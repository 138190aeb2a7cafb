/* Command line and output: usage errors, bind errors, environment defaults, log lines, journal
 * levels and timestamps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"

#define RUN_MS 10000

static size_t count_lines(const char *text)
{
    size_t n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

static void test_cli_help_version(void **state)
{
    const char *help[] = {"--help", NULL};
    struct rc_opts o = {.argv = help, .no_port = true};
    char *out, *err;
    int st = rc_run(&o, RUN_MS, &out, &err);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_true(strlen(out) > 0);
    assert_non_null(strstr(out, "--max-queue")); /* it documents the options */
    free(out);
    free(err);

    const char *version[] = {"--version", NULL};
    o.argv = version;
    st = rc_run(&o, RUN_MS, &out, &err);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_non_null(strstr(out, "ringcast"));
    free(out);
    free(err);
}

/* Bad usage: one line on stderr naming the problem, exit 2, and no server started. */
static void test_cli_usage_errors(void **state)
{
    static const char *const cases[][6] = {
        {"--bogus"},
        {"--port"},
        {"--port", "abc"},
        {"--port", "70000"},
        {"--port", "-1"},
        {"--port", "80x"},
        {"--framing", "xml"},
        {"--framing"},
        {"--max-frame", "2M", "--max-queue", "1M"},
        {"--max-queue", "12Q"},
        {"--max-queue", "abc"},
        {"--max-frame", ""},
        {"--slow-policy", "maybe"},
        {"--zerocopy", "sometimes"},
        {"--max-clients", "lots"},
        {"--drain-timeout", "soon"},
        {"--stats-interval", "x"},
        {"--frame-timeout", "1s2"},
        {"--zc-threshold", "big"},
        {"--address", "localhost"},
        {"--address", "127.0.0.1:5000"},
        {"--backlog", "0"},
        {"--pace-window", "0"},
        {"--metrics", "nowhere"},
        {"-x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* Port cases without the harness's "--port 0"; the others keep it, in case they start. */
        bool port_case = strcmp(cases[i][0], "--port") == 0;
        struct rc_opts o = {.argv = cases[i], .no_port = port_case};
        char *out, *err;
        int st = rc_run(&o, RUN_MS, &out, &err);
        char args[128] = "";
        for (int j = 0; cases[i][j]; j++) {
            strcat(args, cases[i][j]);
            strcat(args, " ");
        }
        if (st == -1)
            fail_msg("ringcast %s: still running after %d ms (want exit 2)", args, RUN_MS);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 2)
            fail_msg("ringcast %s: status 0x%x, want exit 2; stderr: %s", args, st, err);
        if (count_lines(err) != 1 || strlen(err) < 5)
            fail_msg("ringcast %s: want one line on stderr, got \"%s\"", args, err);
        if (strstr(out, "Server started"))
            fail_msg("ringcast %s: started anyway", args);
        free(out);
        free(err);
    }
}

/* -h is --help: the same text, exit 0. */
static void test_cli_short_help(void **state)
{
    const char *help[] = {"--help", NULL}, *h[] = {"-h", NULL};
    struct rc_opts o = {.argv = help, .no_port = true};
    char *want, *out, *err;
    int st = rc_run(&o, RUN_MS, &want, &err);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(err);
    o.argv = h;
    st = rc_run(&o, RUN_MS, &out, &err);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_string_equal(out, want);
    assert_string_equal(err, "");
    free(want);
    free(out);
    free(err);
}

/* A host name is a usage error (exit 2), for --address and ADDRESS, with a hint. */
static void test_cli_address_not_literal(void **state)
{
    const char *args[] = {"--address", "localhost", NULL};
    struct rc_opts o = {.argv = args};
    char *out, *err;
    int st = rc_run(&o, RUN_MS, &out, &err);
    assert_true(st != -1 && WIFEXITED(st));
    if (WEXITSTATUS(st) != 2 || count_lines(err) != 1)
        fail_msg("--address localhost: exit %d, stderr \"%s\"", WEXITSTATUS(st), err);
    assert_string_equal(err, "ringcast: --address: 'localhost' is not an IPv4 or IPv6 literal "
                             "(host names are not resolved; use 127.0.0.1 or ::1)\n");
    assert_null(strstr(out, "Server started"));
    free(out);
    free(err);

    const char *env[] = {"ADDRESS=localhost", NULL};
    struct rc_opts e = {.env = env};
    st = rc_run(&e, RUN_MS, &out, &err);
    assert_true(st != -1 && WIFEXITED(st));
    if (WEXITSTATUS(st) != 2 || count_lines(err) != 1 ||
        !strstr(err, "ADDRESS: 'localhost' is not an IPv4 or IPv6 literal (host names"))
        fail_msg("ADDRESS=localhost: exit %d, stderr \"%s\"", WEXITSTATUS(st), err);
    free(out);
    free(err);
}

/* A port in use: the system's reason, exit 1. */
static void test_cli_address_in_use(void **state)
{
    struct rc_server *s = rc_start(NULL);
    char port[16];
    snprintf(port, sizeof(port), "%d", s->port);
    const char *args[] = {"--port", port, NULL};
    struct rc_opts o = {.argv = args, .no_port = true};
    char *out, *err;
    int st = rc_run(&o, RUN_MS, &out, &err);
    assert_true(st != -1 && WIFEXITED(st));
    if (WEXITSTATUS(st) != 1 || !strstr(err, "Address already in use"))
        fail_msg("second server on port %s: exit %d, stderr \"%s\"", port, WEXITSTATUS(st), err);
    free(out);
    free(err);

    /* An address that is not ours (TEST-NET-1) is not bindable: exit 1 with the reason. */
    const char *args2[] = {"--address", "192.0.2.1", NULL};
    o.argv = args2;
    o.no_port = false;
    st = rc_run(&o, RUN_MS, &out, &err);
    assert_true(st != -1 && WIFEXITED(st));
    if (WEXITSTATUS(st) != 1 || !strstr(err, "Cannot assign requested address"))
        fail_msg("--address 192.0.2.1: exit %d, stderr \"%s\"", WEXITSTATUS(st), err);
    free(out);
    free(err);
}

/* ADDRESS and PORT from the environment give the defaults; flags override them. */
static void test_cli_environment(void **state)
{
    const char *env[] = {"PORT=0", NULL};
    struct rc_opts o = {.env = env, .no_port = true};
    struct rc_server *s = rc_start_ex(&o);
    assert_string_equal(s->host, "127.0.0.1");
    int a = rc_connect(s), b = rc_connect(s);
    rc_send_str(a, "env\n");
    rc_expect_str(b, "env\n");

    /* PORT names a busy port, but --port 0 wins. */
    char busy[32];
    snprintf(busy, sizeof(busy), "PORT=%d", s->port);
    const char *env2[] = {busy, NULL};
    struct rc_opts o2 = {.env = env2};
    struct rc_server *s2 = rc_start_ex(&o2);
    assert_int_not_equal(s2->port, s->port);

    if (rc_have_ipv6()) {
        const char *env3[] = {"ADDRESS=::1", "PORT=0", NULL};
        struct rc_opts o3 = {.env = env3, .no_port = true};
        struct rc_server *s3 = rc_start_ex(&o3);
        assert_string_equal(s3->host, "::1");
    }
}

/* The walkthrough's log lines, exactly. */
static void test_cli_log_lines(void **state)
{
    struct rc_server *s = rc_start(NULL);
    char line[256], want[256];
    assert_true(rc_log_find(s, 0, "Server started at: ", line, sizeof(line)));
    snprintf(want, sizeof(want), "Server started at: 127.0.0.1:%d", s->port);
    assert_string_equal(line, want);

    size_t mark = rc_log_mark(s);
    int a = rc_connect(s);
    int pa = rc_port_of(a);
    snprintf(want, sizeof(want), "127.0.0.1:%d connected.", pa);
    assert_true(rc_log_find(s, mark, want, line, sizeof(line)));
    assert_string_equal(line, want);

    rc_close(a);
    snprintf(want, sizeof(want), "127.0.0.1:%d disconnected.", pa);
    assert_true(rc_log_wait(s, mark, want, RC_WAIT_MS));
    assert_true(rc_log_find(s, mark, want, line, sizeof(line)));
    assert_string_equal(line, want);
}

/* stdout is the journal: each line gets the sd-daemon level <6>, and only that stream does. */
static void test_cli_journal_stdout(void **state)
{
    struct rc_opts o = {.journal_fd = 1};
    struct rc_server *s = rc_start_ex(&o);
    char line[256], want[256];
    assert_true(rc_log_find(s, 0, "Server started at: ", line, sizeof(line)));
    snprintf(want, sizeof(want), "<6>Server started at: 127.0.0.1:%d", s->port);
    assert_string_equal(line, want);

    size_t mark = rc_log_mark(s);
    int a = rc_connect(s);
    snprintf(want, sizeof(want), "<6>127.0.0.1:%d connected.", rc_port_of(a));
    assert_true(rc_log_find(s, mark, "connected.", line, sizeof(line)));
    assert_string_equal(line, want);

    /* A usage error goes to stderr, which is not the journal here: no level. */
    const char *bad[] = {"--bogus", NULL};
    struct rc_opts b = {.argv = bad, .journal_fd = 1};
    char *out, *err;
    int st = rc_run(&b, RUN_MS, &out, &err);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2);
    assert_string_equal(err, "ringcast: unknown option '--bogus' (see --help)\n");
    free(out);
    free(err);
}

/* stderr is the journal: errors get <3>, warnings <4>; stdout keeps its plain lines. */
static void test_cli_journal_stderr(void **state)
{
    const char *bad[] = {"--bogus", NULL};
    struct rc_opts b = {.argv = bad, .journal_fd = 2};
    char *out, *err;
    int st = rc_run(&b, RUN_MS, &out, &err);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2);
    assert_string_equal(err, "<3>ringcast: unknown option '--bogus' (see --help)\n");
    free(out);
    free(err);

    struct rc_opts o = {.journal_fd = 2};
    struct rc_server *s = rc_start_ex(&o);
    char line[256], want[256];
    assert_true(rc_log_find(s, 0, "Server started at: ", line, sizeof(line)));
    snprintf(want, sizeof(want), "Server started at: 127.0.0.1:%d", s->port);
    assert_string_equal(line, want);
    /* Lowering the server's descriptor limit makes it warn (on its next tick). */
    struct rlimit rl;
    assert_int_equal(prlimit(s->pid, RLIMIT_NOFILE, NULL, &rl), 0);
    rl.rlim_cur = rl.rlim_cur > 4096 ? 4096 : rl.rlim_cur - 1;
    assert_int_equal(prlimit(s->pid, RLIMIT_NOFILE, &rl, NULL), 0);
    static const char warning[] = "<4>ringcast: warning: descriptor limit changed to ";
    for (size_t n = 1; n <= 8 && !rc_err_contains(s, warning); n++)
        if (rc_err_wait_lines(s, n, RC_WAIT_MS) < n)
            break;
    if (!rc_err_contains(s, warning)) {
        rc_dump(s);
        fail_msg("no <4> warning on stderr after the descriptor limit changed");
    }
}

/* Checks that line starts with "YYYY-MM-DDTHH:MM:SS.mmmZ " within a minute of now, UTC. */
static void expect_timestamp(const char *line)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; shape[i]; i++) {
        bool ok = shape[i] == 'd' ? line[i] >= '0' && line[i] <= '9' : line[i] == shape[i];
        if (!ok)
            fail_msg("\"%s\" does not start with an RFC 3339 UTC timestamp", line);
    }
    struct tm tm = {0};
    assert_non_null(strptime(line, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm), now = time(NULL);
    if (t < now - 60 || t > now + 60)
        fail_msg("timestamp \"%.24s\" is not within a minute of now", line);
}

/* --log-timestamps puts the UTC time first on every line (after the level, for the journal). */
static void test_cli_log_timestamps(void **state)
{
    struct rc_server *s = rc_start("--log-timestamps", NULL);
    char line[256], want[256];
    assert_true(rc_log_find(s, 0, "Server started at: ", line, sizeof(line)));
    expect_timestamp(line);
    snprintf(want, sizeof(want), "Server started at: 127.0.0.1:%d", s->port);
    assert_string_equal(line + 25, want);
    size_t mark = rc_log_mark(s);
    int a = rc_connect(s);
    assert_true(rc_log_find(s, mark, "connected.", line, sizeof(line)));
    expect_timestamp(line);
    snprintf(want, sizeof(want), "127.0.0.1:%d connected.", rc_port_of(a));
    assert_string_equal(line + 25, want);

    const char *args[] = {"--log-timestamps", NULL};
    struct rc_opts o = {.argv = args, .journal_fd = 1};
    struct rc_server *j = rc_start_ex(&o);
    assert_true(rc_log_find(j, 0, "Server started at: ", line, sizeof(line)));
    assert_memory_equal(line, "<6>", 3);
    expect_timestamp(line + 3);
    snprintf(want, sizeof(want), "Server started at: 127.0.0.1:%d", j->port);
    assert_string_equal(line + 28, want);
}

/* -v logs every frame: payload without terminator, non-printables escaped, cut at 200 bytes. */
static void test_cli_verbose(void **state)
{
    struct rc_server *s = rc_start("-v", NULL);
    int a = rc_connect(s), b = rc_connect(s);
    int pa = rc_port_of(a);
    char want[256], line[1024];
    size_t mark = rc_log_mark(s);
    rc_send_str(a, "Hey\n");
    rc_expect_str(b, "Hey\n");
    snprintf(want, sizeof(want), "127.0.0.1:%d said: Hey", pa);
    assert_true(rc_log_wait(s, mark, want, RC_WAIT_MS));
    assert_true(rc_log_find(s, mark, want, line, sizeof(line)));
    assert_string_equal(line, want);

    mark = rc_log_mark(s);
    static const char odd[] = "a\tb\x01\xff\"z\r\n";
    rc_send(a, odd, sizeof(odd) - 1);
    rc_expect(b, odd, sizeof(odd) - 1);
    snprintf(want, sizeof(want), "127.0.0.1:%d said: a", pa);
    assert_true(rc_log_wait(s, mark, want, RC_WAIT_MS));
    assert_true(rc_log_find(s, mark, want, line, sizeof(line)));
    for (const unsigned char *p = (const unsigned char *)line; *p; p++)
        if (*p < 0x20 || *p >= 0x7f)
            fail_msg("raw byte 0x%02x in the log line \"%s\"", *p, line);
    assert_non_null(strstr(line, "said: a\\tb\\"));
    /* Whether a \r before the \n counts as part of the terminator (telnet) is left open. */

    mark = rc_log_mark(s);
    char big[302];
    memset(big, 'x', 300);
    big[300] = '\n';
    big[301] = '\0';
    rc_send_str(a, big);
    rc_expect_str(b, big);
    snprintf(want, sizeof(want), "127.0.0.1:%d said: x", pa);
    assert_true(rc_log_wait(s, mark, want, RC_WAIT_MS));
    assert_true(rc_log_find(s, mark, want, line, sizeof(line)));
    const char *x = strstr(line, "said: ") + 6;
    size_t run = strspn(x, "x");
    if (run != 200)
        fail_msg("-v logged %zu bytes of a 300-byte payload, want 200: \"%s\"", run, line);
}

/* -v with len32 logs the payload without its header. */
static void test_cli_verbose_len32(void **state)
{
    struct rc_server *s = rc_start("-v", "--framing", "len32", NULL);
    int a = rc_connect(s), b = rc_connect(s);
    size_t mark = rc_log_mark(s);
    uint8_t f[16];
    size_t n = rc_make_len32(f, "Hi there", 8);
    rc_send(a, f, n);
    rc_expect(b, f, n);
    char want[128], line[256];
    snprintf(want, sizeof(want), "127.0.0.1:%d said: ", rc_port_of(a));
    assert_true(rc_log_wait(s, mark, want, RC_WAIT_MS));
    assert_true(rc_log_find(s, mark, want, line, sizeof(line)));
    strcat(want, "Hi there");
    assert_string_equal(line, want);
}

/* -q still says where the metrics are: with port 0 nothing else tells a script the port. */
static void test_cli_quiet_keeps_metrics_address(void **state)
{
    (void)state;
    struct rc_server *s = rc_start("-q", "--metrics", "127.0.0.1:0", NULL);
    assert_true(rc_log_wait(s, 0, "Metrics at: http://127.0.0.1:", RC_WAIT_MS));
}

/* -q keeps only the start line (warnings and errors go to stderr). */
static void test_cli_quiet(void **state)
{
    struct rc_server *s = rc_start("-q", NULL);
    int b = rc_connect_raw(s, 0);
    int a = rc_connect_raw(s, 0);
    /* No connect lines to wait for: repeat a frame until b is registered and gets one. */
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    bool got = false;
    while (!got && rc_now_ms() < deadline) {
        rc_send_str(a, "ping\n");
        got = !rc_quiet(b, 50);
    }
    assert_true(got);
    rc_close(a);
    rc_close(b);
    /*
     * A second pair, relayed after the first pair's connects and closes were handled: any
     * connect or disconnect line for those would be in the log by now.
     */
    int c = rc_connect_raw(s, 0);
    int d = rc_connect_raw(s, 0);
    got = false;
    while (!got && rc_now_ms() < deadline) {
        rc_send_str(c, "ping\n");
        got = !rc_quiet(d, 50);
    }
    assert_true(got);
    assert_int_equal(rc_log_count(s, 0, "connected"), 0);
    assert_int_equal(rc_log_count(s, 0, "Server started at: "), 1);
}

/* --stats-interval prints a periodic summary line. */
static void test_cli_stats_interval(void **state)
{
    struct rc_server *s = rc_start("--stats-interval", "0.2", NULL);
    size_t mark = rc_log_mark(s);
    int a = rc_connect(s), b = rc_connect(s);
    rc_send_str(a, "count me\n");
    rc_expect_str(b, "count me\n");
    assert_true(rc_log_wait_count(s, mark, "clients", 3, RC_WAIT_MS) >= 3);
}

/* Every option is accepted with a sensible value, and the server then works. */
static void test_cli_all_options(void **state)
{
    struct rc_server *s =
        rc_start("--address", "127.0.0.1", "--framing", "line", "--echo", "--max-frame", "64K",
                 "--max-queue", "1M", "--slow-policy", "drop", "--max-clients", "100", "--zerocopy",
                 "off", "--zc-threshold", "16K", "--drain-timeout", "1.5", "--stats-interval", "60",
                 "--frame-timeout", "10", "--max-partial-memory", "1M", "--backlog", "16",
                 "--verbose", NULL);
    int a = rc_connect(s), b = rc_connect(s);
    rc_send_str(a, "all options\n");
    rc_expect_str(a, "all options\n");
    rc_expect_str(b, "all options\n");

    struct rc_server *q = rc_start("--quiet", "--max-queue", "1G", "--max-frame", "1G", NULL);
    int c = rc_connect_raw(q, 0);
    (void)c;
    assert_true(rc_alive(q));
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_cli_help_version, rc_teardown),
        cmocka_unit_test_teardown(test_cli_usage_errors, rc_teardown),
        cmocka_unit_test_teardown(test_cli_short_help, rc_teardown),
        cmocka_unit_test_teardown(test_cli_address_not_literal, rc_teardown),
        cmocka_unit_test_teardown(test_cli_address_in_use, rc_teardown),
        cmocka_unit_test_teardown(test_cli_environment, rc_teardown),
        cmocka_unit_test_teardown(test_cli_log_lines, rc_teardown),
        cmocka_unit_test_teardown(test_cli_journal_stdout, rc_teardown),
        cmocka_unit_test_teardown(test_cli_journal_stderr, rc_teardown),
        cmocka_unit_test_teardown(test_cli_log_timestamps, rc_teardown),
        cmocka_unit_test_teardown(test_cli_verbose, rc_teardown),
        cmocka_unit_test_teardown(test_cli_verbose_len32, rc_teardown),
        cmocka_unit_test_teardown(test_cli_quiet, rc_teardown),
        cmocka_unit_test_teardown(test_cli_quiet_keeps_metrics_address, rc_teardown),
        cmocka_unit_test_teardown(test_cli_stats_interval, rc_teardown),
        cmocka_unit_test_teardown(test_cli_all_options, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
