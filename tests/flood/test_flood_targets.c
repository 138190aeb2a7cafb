/* flood against a real redis-server or nats-server (FLOOD_TARGET, "redis" or "nats", chosen at
 * build time), started by the test on a loopback port: exact counts, nothing lost.
 * Skipped (77) when the server is not installed (tools/deps installs both) or when flood does
 * not implement the protocol yet (it then rejects --proto as a bad argument, exit 2). */
#include "flood_support.h"

#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef FLOOD_TARGET
#error "FLOOD_TARGET must be \"redis\" or \"nats\""
#endif

static char server_path[512];
static pid_t server_pid;
static int server_port;

static bool is_redis(void)
{
    return strcmp(FLOOD_TARGET, "redis") == 0;
}

static int start_server(void **state)
{
    (void)state;
    char log[256];
    snprintf(log, sizeof(log), "%s/flood-test-%s-%d.log",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", FLOOD_TARGET,
             (int)getpid());
    /* The port was free a moment ago; another process may take it meanwhile: try again. */
    for (int attempt = 0; attempt < 5; attempt++) {
        char port[16];
        server_port = sp_free_port();
        snprintf(port, sizeof(port), "%d", server_port);
        if (is_redis()) {
            const char *argv[] = {server_path,
                                  "--port",
                                  port,
                                  "--bind",
                                  "127.0.0.1",
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--client-output-buffer-limit",
                                  "pubsub 0 0 0",
                                  "--daemonize",
                                  "no",
                                  NULL};
            server_pid = fs_spawn(argv, log, NULL);
        } else {
            const char *argv[] = {server_path, "-a", "127.0.0.1", "-p", port, NULL};
            server_pid = fs_spawn(argv, log, NULL);
        }
        if (sp_wait_listening(server_port, server_pid, FS_START_MS)) {
            unlink(log);
            return 0;
        }
        sp_stop(server_pid);
        server_pid = 0;
    }
    fprintf(stderr, "%s did not start; see %s\n", server_path, log);
    return -1;
}

static int stop_server(void **state)
{
    (void)state;
    sp_stop(server_pid);
    server_pid = 0;
    return 0;
}

/* True when flood accepts --proto FLOOD_TARGET (it says 2, bad arguments, otherwise). */
static bool flood_knows_proto(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sin);
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &sl) < 0)
        return false;
    char port[16];
    snprintf(port, sizeof(port), "%d", ntohs(sin.sin_port));
    const char *argv[] = {fs_flood_bin(), "--proto", FLOOD_TARGET, "--port", port, "--subs", "1",
                          "--pubs",       "1",       "--count",    "1",      NULL};
    char *err = NULL;
    int code = sp_run(argv, FS_RUN_MS, NULL, &err);
    close(fd);
    if (code == 2)
        fprintf(stderr, "flood does not take --proto %s yet: %s", FLOOD_TARGET, err ? err : "");
    free(err);
    return code != 2;
}

static void exact_run(const char *subs, const char *pubs, const char *count, const char *size,
                      const char *verify, long want_samples_per_msg)
{
    char port[16], pid[16];
    snprintf(port, sizeof(port), "%d", server_port);
    snprintf(pid, sizeof(pid), "%d", (int)server_pid);
    const char *args[] = {"--proto",     FLOOD_TARGET, "--port",
                          port,          "--subs",     subs,
                          "--pubs",      pubs,         "--count",
                          count,         "--size",     size,
                          "--warmup",    "0",          "--server-pid",
                          pid,           "--verify",   verify,
                          "--read-mode", "trunc",      "--expect-lossless",
                          NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    assert_int_equal(r.code, 0);
    const char *j = r.json;
    long published = atol(pubs) * atol(count);
    assert_int_equal((long)fs_json_need(j, "published"), published);
    assert_int_equal((long)fs_json_need(j, "expected_deliveries"), published * atol(subs));
    assert_int_equal((long)fs_json_need(j, "deliveries"), published * atol(subs));
    assert_int_equal((long)fs_json_need(j, "lost"), 0);
    assert_int_equal((long)fs_json_need(j, "duplicated"), 0);
    assert_int_equal((long)fs_json_need(j, "reordered"), 0);
    assert_int_equal((long)fs_json_need(j, "corrupt"), 0);
    assert_int_equal((long)fs_json_need(j, "errors"), 0);
    assert_int_equal((long)fs_json_need(j, "latency_us.samples"), published * want_samples_per_msg);
    double scpu = fs_json_need(j, "server_cpu");
    assert_true(scpu >= 0 && scpu <= 64);
    fs_flood_free(&r);
}

/* 2 publishers x 500 messages x 20 subscribers = 20,000 deliveries, every one verified. */
static void test_exact_counts(void **state)
{
    (void)state;
    exact_run("20", "2", "500", "64", "20", 20);
}

/* 1 KiB messages, 5 verified subscribers and 15 that count bytes. */
static void test_byte_counting(void **state)
{
    (void)state;
    exact_run("20", "2", "500", "1024", "5", 5);
}

int main(void)
{
    const char *name = is_redis() ? "redis-server" : "nats-server";
    if (!fs_which(name, server_path, sizeof(server_path))) {
        fprintf(stderr, "%s is not installed (tools/deps installs it): skipped\n", name);
        return 77;
    }
    if (!flood_knows_proto())
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exact_counts, start_server, stop_server),
        cmocka_unit_test_setup_teardown(test_byte_counting, start_server, stop_server),
    };
    return cmocka_run_group_tests_name(is_redis() ? "flood_redis" : "flood_nats", tests, NULL,
                                       NULL);
}
