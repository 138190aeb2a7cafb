/* Limits: --max-clients, EMFILE on accept, --frame-timeout, --max-partial-memory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "harness.h"

/* Connection N+1 is closed at once; the others carry on; a freed slot can be reused. */
static void test_limits_max_clients(void **state)
{
    struct rc_server *s = rc_start("--max-clients", "3", NULL);
    int a = rc_connect(s), b = rc_connect(s), c = rc_connect(s);
    size_t err0 = rc_err_lines(s);
    int64_t t0 = rc_now_ms();

    int d = rc_connect_raw(s, 0);
    rc_expect_closed(d);
    rc_close(d);

    rc_send_str(a, "still works\n");
    rc_expect_str(b, "still works\n");
    rc_expect_str(c, "still works\n");

    /* A burst of refused connections is logged at most once a second. */
    for (int i = 0; i < 30; i++) {
        int x = rc_connect_raw(s, 0);
        rc_expect_closed(x);
        rc_close(x);
    }
    int64_t secs = (rc_now_ms() - t0 + 999) / 1000;
    size_t warnings = rc_err_lines(s) - err0;
    if (warnings > (size_t)secs + 1)
        fail_msg("%zu stderr lines for 31 refused connections in %lld s", warnings,
                 (long long)secs);

    size_t mark = rc_log_mark(s);
    int pc = rc_close(c);
    rc_wait_client_log(s, mark, pc, "disconnected");
    int e = rc_connect(s);
    rc_send_str(a, "to the newcomer\n");
    rc_expect_str(b, "to the newcomer\n");
    rc_expect_str(e, "to the newcomer\n");
}

/* A --max-clients value beyond what RLIMIT_NOFILE can hold is lowered with a warning. */
static void test_limits_max_clients_above_rlimit(void **state)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 900000)
        skip();
    const char *args[] = {"--max-clients", "1000000", NULL};
    struct rc_opts o = {.argv = args};
    struct rc_server *s = rc_start_ex(&o);
    assert_true(rc_err_wait_lines(s, 1, RC_WAIT_MS) >= 1);
    int a = rc_connect(s), b = rc_connect(s);
    rc_send_str(a, "ok\n");
    rc_expect_str(b, "ok\n");
}

/*
 * EMFILE on accept (the running server's RLIMIT_NOFILE lowered so no descriptor is free): the
 * server stays up without spinning, existing clients still relay, and once the limit is back new
 * clients are accepted.
 */
static void test_limits_emfile(void **state)
{
    struct rc_server *s = rc_start(NULL);
    int a = rc_connect(s), b = rc_connect(s);

    struct rlimit old, low;
    assert_int_equal(prlimit(s->pid, RLIMIT_NOFILE, NULL, &old), 0);
    int lowest = rc_lowest_free_fd(s);
    assert_true(lowest > 0);
    low.rlim_cur = (rlim_t)lowest;
    low.rlim_max = old.rlim_max;
    assert_int_equal(prlimit(s->pid, RLIMIT_NOFILE, &low, NULL), 0);

    /* These connections complete in the kernel; the server cannot accept them yet. */
    int c1 = rc_connect_raw(s, 0);
    int c2 = rc_connect_raw(s, 0);
    (void)c1;
    (void)c2;

    /* The server must not spin on the failing accept: a measured window, not a wait. */
    long cpu0 = rc_cpu_ms(s);
    int64_t w0 = rc_now_ms();
    struct timespec one = {.tv_sec = 1};
    nanosleep(&one, NULL);
    long cpu1 = rc_cpu_ms(s);
    int64_t wall = rc_now_ms() - w0;
    assert_true(cpu0 >= 0 && cpu1 >= 0);
    if (cpu1 - cpu0 > wall / 2)
        fail_msg("the server used %ld ms of CPU in %lld ms while accept failed with EMFILE",
                 cpu1 - cpu0, (long long)wall);
    assert_true(rc_alive(s));

    rc_send_str(a, "during emfile\n");
    rc_expect_str(b, "during emfile\n");

    assert_int_equal(prlimit(s->pid, RLIMIT_NOFILE, &old, NULL), 0);
    /* Whether c1/c2 were dropped or will be accepted is the server's choice; new ones must work. */
    int d = rc_connect(s);
    rc_send_str(a, "after emfile\n");
    rc_expect_str(b, "after emfile\n");
    rc_expect_str(d, "after emfile\n");
    assert_true(rc_alive(s));
}

/* --frame-timeout (fractional): a client holding a partial frame too long is disconnected. */
static void test_limits_frame_timeout(void **state)
{
    struct rc_server *s = rc_start("--frame-timeout", "0.5", NULL);
    int idle = rc_connect(s), a = rc_connect(s), b = rc_connect(s);
    size_t mark = rc_log_mark(s);
    int pa = rc_port_of(a);
    rc_send_str(a, "never finished");
    rc_wait_client_log(s, mark, pa, "disconnected (partial frame timeout).");
    rc_expect_closed(a);

    /* Idle clients (nothing partial) are not affected, however long they wait. */
    rc_send_str(b, "still here\n");
    rc_expect_str(idle, "still here\n");
    char needle[64];
    rc_needle(needle, sizeof(needle), rc_port_of(idle), "disconnected");
    assert_int_equal(rc_log_count(s, mark, needle), 0);
}

/*
 * --max-partial-memory: past it, the client holding the largest partial frame is disconnected,
 * the others keep their partial frames.
 */
static void test_limits_partial_memory(void **state)
{
    struct rc_server *s = rc_start("--max-partial-memory", "64K", NULL);
    int big = rc_connect(s), small = rc_connect(s), reader = rc_connect(s);
    size_t mark = rc_log_mark(s);
    int pbig = rc_port_of(big);
    char *data = malloc(50 * 1024);
    memset(data, 'b', 50 * 1024);
    rc_send(big, data, 40 * 1024);
    memset(data, 's', 30 * 1024);
    rc_send(small, data, 30 * 1024); /* 70 KiB partial in all: past the limit */
    rc_wait_client_log(s, mark, pbig, "disconnected");
    size_t n = rc_recv_until_eof(big, NULL, 0, RC_IO_MS);
    assert_true(n != (size_t)-1);

    /* The smaller partial frame survived and completes normally. */
    rc_send_str(small, "\n");
    data[30 * 1024] = '\n';
    rc_expect(reader, data, 30 * 1024 + 1);
    free(data);
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_limits_max_clients, rc_teardown),
        cmocka_unit_test_teardown(test_limits_max_clients_above_rlimit, rc_teardown),
        cmocka_unit_test_teardown(test_limits_emfile, rc_teardown),
        cmocka_unit_test_teardown(test_limits_frame_timeout, rc_teardown),
        cmocka_unit_test_teardown(test_limits_partial_memory, rc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
