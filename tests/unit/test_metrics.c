/* Unit tests for src/metrics.c (the Prometheus exposition) and the stats batch histogram. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ringcast/alloc.h"
#include "ringcast/metrics.h"
#include "ringcast/stats.h"

static char *render(const struct stats *s, struct metrics_buf *b)
{
    static const struct metrics_listener listeners[] = {
        {.address = "127.0.0.1:5000", .role = "both", .clients = 2, .accepted = 9},
        {.address = "[::1]:5001", .role = "sub", .clients = 1, .accepted = 4},
        {.address = "0.0.0.0:5002", .role = "pub", .clients = 0, .accepted = 0},
    };
    struct metrics_snapshot m = {
        .stats = s,
        .version = "1.2.3",
        .features = "defer_taskrun,send_zc",
        .uptime_seconds = 12.5,
        .clients = 3,
        .pending_bytes = 4096,
        .max_backlog_bytes = 1024,
        .clients_waiting_writable = 2,
        .partial_bytes = 7,
        .log_capacity_bytes = 1 << 25,
        .listeners = listeners,
        .nlisteners = 3,
    };
    *b = (struct metrics_buf){0};
    assert_int_equal(metrics_render(&m, b), 0);
    /* NUL-terminate for strstr. */
    metrics_buf_printf(b, "%s", "");
    assert_false(b->failed);
    return b->data;
}

static void expect_line(const char *text, const char *line)
{
    char want[256];
    snprintf(want, sizeof(want), "\n%s\n", line);
    if (!strstr(text, want))
        fail_msg("missing line '%s' in:\n%s", line, text);
}

static void test_metrics_counters_and_labels(void **state)
{
    (void)state;
    struct stats s = {0};
    s.accepted = 5;
    s.rejected_max_clients = 2;
    s.rejected_per_ip = 7;
    s.frames_in = 10;
    s.deliveries = 20;
    s.disconnects[DISC_SLOW_CONSUMER] = 1;
    s.disconnects[DISC_PROTOCOL_VIOLATION] = 6;
    s.protocol_violations[VIOL_SUB_SENT] = 6;
    struct metrics_buf b;
    char *t = render(&s, &b);
    expect_line(t, "ringcast_build_info{version=\"1.2.3\",features=\"defer_taskrun,send_zc\"} 1");
    expect_line(t, "ringcast_clients 3");
    expect_line(t, "ringcast_connections_accepted_total 5");
    expect_line(t, "ringcast_connections_rejected_total{reason=\"max_clients\"} 2");
    expect_line(t, "ringcast_connections_rejected_total{reason=\"emfile\"} 0");
    expect_line(t, "ringcast_connections_rejected_total{reason=\"per_ip\"} 7");
    expect_line(t, "ringcast_frames_received_total 10");
    expect_line(t, "ringcast_frames_delivered_total 20");
    expect_line(t, "ringcast_disconnects_total{reason=\"slow_consumer\"} 1");
    expect_line(t, "ringcast_disconnects_total{reason=\"eof\"} 0");
    expect_line(t, "ringcast_disconnects_total{reason=\"protocol_violation\"} 6");
    expect_line(t, "ringcast_protocol_violations_total{reason=\"sub_sent\"} 6");
    expect_line(t, "# TYPE ringcast_protocol_violations_total counter");
    /* By listener and role, in a family of their own: ringcast_clients stays unlabelled. */
    expect_line(t, "ringcast_listener_clients{listener=\"127.0.0.1:5000\",role=\"both\"} 2");
    expect_line(t, "ringcast_listener_clients{listener=\"[::1]:5001\",role=\"sub\"} 1");
    expect_line(t, "ringcast_listener_clients{listener=\"0.0.0.0:5002\",role=\"pub\"} 0");
    expect_line(t, "# TYPE ringcast_listener_clients gauge");
    expect_line(t, "ringcast_listener_connections_accepted_total{listener=\"127.0.0.1:5000\","
                   "role=\"both\"} 9");
    expect_line(t, "ringcast_listener_connections_accepted_total{listener=\"[::1]:5001\","
                   "role=\"sub\"} 4");
    expect_line(t, "# TYPE ringcast_listener_connections_accepted_total counter");
    if (strstr(t, "ringcast_clients{"))
        fail_msg("ringcast_clients has labelled samples:\n%s", t);
    expect_line(t, "ringcast_pending_output_bytes 4096");
    expect_line(t, "ringcast_max_client_backlog_bytes 1024");
    expect_line(t, "ringcast_clients_waiting_writable 2");
    expect_line(t, "# TYPE ringcast_frames_delivered_total counter");
    expect_line(t, "# TYPE ringcast_clients gauge");
    rc_free(b.data);
}

/* Every sample's family has HELP and TYPE lines before it. */
static void test_metrics_every_family_typed(void **state)
{
    (void)state;
    struct stats s = {0};
    struct metrics_buf b;
    char *t = render(&s, &b);
    char *save = NULL;
    char typed[64][96];
    int ntyped = 0;
    for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "# TYPE ", 7)) {
            assert_true(ntyped < 64);
            sscanf(line + 7, "%95s", typed[ntyped++]);
            continue;
        }
        if (line[0] == '#')
            continue;
        char name[96];
        sscanf(line, "%95[^{ ]", name);
        int found = 0;
        for (int i = 0; i < ntyped && !found; i++) {
            size_t n = strlen(typed[i]);
            found = !strncmp(name, typed[i], n) &&
                    (name[n] == '\0' || !strcmp(name + n, "_bucket") || !strcmp(name + n, "_sum") ||
                     !strcmp(name + n, "_count"));
        }
        if (!found)
            fail_msg("sample '%s' has no TYPE line before it", name);
    }
    rc_free(b.data);
}

static void test_metrics_batch_histogram_cumulative(void **state)
{
    (void)state;
    struct stats s = {0};
    stats_observe_batch(&s, 1);
    stats_observe_batch(&s, 2);
    stats_observe_batch(&s, 3);      /* le 4 */
    stats_observe_batch(&s, 100000); /* beyond 65536: +Inf only */
    assert_int_equal(s.batch_sends, 4);
    assert_int_equal(s.batch_frames, 100006);
    struct metrics_buf b;
    char *t = render(&s, &b);
    expect_line(t, "ringcast_send_batch_frames_bucket{le=\"1\"} 1");
    expect_line(t, "ringcast_send_batch_frames_bucket{le=\"2\"} 2");
    expect_line(t, "ringcast_send_batch_frames_bucket{le=\"4\"} 3");
    expect_line(t, "ringcast_send_batch_frames_bucket{le=\"65536\"} 3");
    expect_line(t, "ringcast_send_batch_frames_bucket{le=\"+Inf\"} 4");
    expect_line(t, "ringcast_send_batch_frames_sum 100006");
    expect_line(t, "ringcast_send_batch_frames_count 4");
    rc_free(b.data);
}

static void test_metrics_out_of_memory(void **state)
{
    (void)state;
    struct stats s = {0};
    struct metrics_snapshot m = {.stats = &s, .version = "v", .features = ""};
    struct metrics_buf b = {0};
    rc_alloc_fail_after(1);
    assert_int_equal(metrics_render(&m, &b), -ENOMEM);
    rc_alloc_fail_after(0);
    assert_true(b.failed);
    rc_free(b.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_counters_and_labels),
        cmocka_unit_test(test_metrics_every_family_typed),
        cmocka_unit_test(test_metrics_batch_histogram_cumulative),
        cmocka_unit_test(test_metrics_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
