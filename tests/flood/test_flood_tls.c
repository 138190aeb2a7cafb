/* flood --tls: against ringcast's tls listener (line and len32, --auth, a certificate that does
 * not verify), and, when installed, redis-server --tls-port and nats-server --tls: exact counts,
 * lossless, every message verified where the test says so.
 *
 * The certificates are made at run time with the openssl command into a temporary directory (an
 * EC P-256 CA and a server certificate for localhost and 127.0.0.1; a second CA that signed
 * nothing the servers use) and removed at the end; nothing is committed. Skipped (77) when the
 * openssl command is missing; the redis and nats cases skip themselves when the server is. */
#include "flood_support.h"
#include "harness.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[256];               /* the temporary directory of the certificates */
static char ca[320], other_ca[320]; /* the CA that signed the server's, one that did not */
static char cert[320], key[320], auth[320];
static char openssl[512];

#define TOKEN "flood-tls-test-token"

static void path_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

/* Runs the openssl command with args (NULL-terminated); false when it fails. */
static bool run_openssl(const char *const *args)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = openssl;
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *err = NULL;
    int code = sp_run(argv, 30000, NULL, &err);
    if (code != 0)
        fprintf(stderr, "openssl %s failed (%d): %s\n", args[0], code, err ? err : "");
    free(err);
    return code == 0;
}

/* A self-signed CA (name.pem, name.key). */
static bool make_ca(const char *name, char *pem, size_t cap)
{
    char k[320], subj[64];
    path_in(pem, cap, name);
    strncat(pem, ".pem", cap - strlen(pem) - 1);
    path_in(k, sizeof(k), name);
    strncat(k, ".key", sizeof(k) - strlen(k) - 1);
    snprintf(subj, sizeof(subj), "/CN=flood test %s", name);
    const char *args[] = {
        "req",    "-x509",   "-newkey", "ec",   "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", k,         "-out", pem,        "-days",
        "2",      "-subj",   subj,      NULL};
    return run_openssl(args);
}

static int make_certs(void)
{
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof(dir), "%s/flood-tls-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return -1;
    }
    char csr[320], ext[320], cakey[320];
    path_in(cert, sizeof(cert), "server.pem");
    path_in(key, sizeof(key), "server.key");
    path_in(csr, sizeof(csr), "server.csr");
    path_in(ext, sizeof(ext), "server.ext");
    path_in(cakey, sizeof(cakey), "ca.key");
    path_in(auth, sizeof(auth), "auth");
    if (!make_ca("ca", ca, sizeof(ca)) || !make_ca("other", other_ca, sizeof(other_ca)))
        return -1;
    FILE *f = fopen(ext, "w");
    if (!f)
        return -1;
    fputs("subjectAltName=DNS:localhost,IP:127.0.0.1\n", f);
    fclose(f);
    const char *req[] = {"req",    "-newkey",       "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                         "-nodes", "-keyout",       key,  "-out",     csr,
                         "-subj",  "/CN=localhost", NULL};
    const char *sign[] = {"x509",   "-req", "-in",         csr, "-CA",  ca,
                          "-CAkey", cakey,  "-set_serial", "1", "-out", cert,
                          "-days",  "2",    "-extfile",    ext, NULL};
    if (!run_openssl(req) || !run_openssl(sign))
        return -1;
    /* ringcast's --auth-file must be readable by its owner only. */
    int fd = open(auth, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, "both " TOKEN "\n", strlen("both " TOKEN "\n")) < 0)
        return -1;
    close(fd);
    return 0;
}

static void remove_certs(void)
{
    static const char *const names[] = {"ca.pem",     "ca.key",     "other.pem",  "other.key",
                                        "server.pem", "server.key", "server.csr", "server.ext",
                                        "auth",       NULL};
    char p[320];
    for (size_t i = 0; names[i]; i++) {
        path_in(p, sizeof(p), names[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* A ringcast with one tls listener on a free port (its default listener on port 0, unused). */
static int start_ringcast_tls(const char *framing, bool with_auth, char *port, size_t cap)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        int p = sp_free_port();
        char listen[64];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d,tls", p);
        const char *argv[16] = {"-q",   "--framing",  framing, "--max-queue", "256M", "--listen",
                                listen, "--tls-cert", cert,    "--tls-key",   key,    NULL};
        if (with_auth) {
            argv[11] = "--auth-file";
            argv[12] = auth;
            argv[13] = NULL;
        }
        struct rc_opts opts = {.argv = argv};
        int status = 0;
        struct rc_server *s = rc_try_start(&opts, &status); /* NULL: the port was taken */
        if (s && sp_wait_listening(p, s->pid, FS_START_MS)) {
            snprintf(port, cap, "%d", p);
            return (int)s->pid;
        }
    }
    fail_msg("ringcast did not listen on its tls listener");
    return -1;
}

/* The counts of a lossless run of pubs x count messages to subs subscribers. */
static void check_exact(const struct fs_flood *r, long pubs, long count, long subs, long timed)
{
    assert_int_equal(r->code, 0);
    const char *j = r->json;
    assert_non_null(j);
    long published = pubs * count;
    assert_int_equal((long)fs_json_need(j, "published"), published);
    assert_int_equal((long)fs_json_need(j, "expected_deliveries"), published * subs);
    assert_int_equal((long)fs_json_need(j, "deliveries"), published * subs);
    assert_int_equal((long)fs_json_need(j, "lost"), 0);
    assert_int_equal((long)fs_json_need(j, "duplicated"), 0);
    assert_int_equal((long)fs_json_need(j, "reordered"), 0);
    assert_int_equal((long)fs_json_need(j, "corrupt"), 0);
    assert_int_equal((long)fs_json_need(j, "errors"), 0);
    assert_int_equal((long)fs_json_need(j, "latency_us.samples"), published * timed);
    /* The result says it ran over TLS, and which suite. */
    assert_non_null(strstr(j, "\n  \"tls\": true,"));
    assert_non_null(strstr(j, "\"tls_cipher\": \"TLS_"));
}

/* Line framing, every subscriber verified, the server's name checked against --tls-ca. */
static void test_ringcast_line(void **state)
{
    (void)state;
    char port[16], pid[16];
    snprintf(pid, sizeof(pid), "%d", start_ringcast_tls("line", false, port, sizeof(port)));
    const char *args[] = {"--proto",  "line",    "--port",       port,     "--tls",
                          "--tls-ca", ca,        "--subs",       "20",     "--pubs",
                          "2",        "--count", "500",          "--size", "64",
                          "--warmup", "0.2",     "--server-pid", pid,      "--expect-lossless",
                          NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    check_exact(&r, 2, 500, 20, 20);
    fs_flood_free(&r);
}

/* len32, 1 KiB, 5 verified and 15 decrypting byte counters, --auth's first frame, the name given
 * with --tls-servername. */
static void test_ringcast_len32_auth(void **state)
{
    (void)state;
    char port[16];
    start_ringcast_tls("len32", true, port, sizeof(port));
    const char *args[] = {"--proto",   "len32",    "--port", port,
                          "--tls",     "--tls-ca", ca,       "--tls-servername",
                          "localhost", "--auth",   TOKEN,    "--subs",
                          "20",        "--pubs",   "2",      "--count",
                          "500",       "--size",   "1024",   "--verify",
                          "5",         "--warmup", "0.2",    "--expect-lossless",
                          NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    check_exact(&r, 2, 500, 20, 5);
    assert_non_null(strstr(r.json, "\"auth\": true"));
    assert_null(strstr(r.json, TOKEN)); /* the token is never written out */
    fs_flood_free(&r);
}

/* A server whose certificate another CA signed: a set-up failure (exit 1) that says why. */
static void test_ringcast_unverified(void **state)
{
    (void)state;
    char port[16];
    start_ringcast_tls("line", false, port, sizeof(port));
    const char *args[] = {"--proto", "line", "--port", port, "--tls",   "--tls-ca", other_ca,
                          "--subs",  "2",    "--pubs", "1",  "--count", "10",       NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    assert_int_equal(r.code, 1);
    assert_non_null(r.err);
    assert_non_null(strstr(r.err, "TLS handshake failed: the server's certificate"));
    fs_flood_free(&r);
}

/* redis-server or nats-server with TLS on a free port; skips the test when it is not installed. */
static pid_t start_target(const char *name, char *port, size_t cap)
{
    char path[512], log[320];
    if (!fs_which(name, path, sizeof(path))) {
        fprintf(stderr, "%s is not installed (tools/deps installs it): skipped\n", name);
        skip();
    }
    path_in(log, sizeof(log), name);
    strncat(log, ".log", sizeof(log) - strlen(log) - 1);
    for (int attempt = 0; attempt < 5; attempt++) {
        snprintf(port, cap, "%d", sp_free_port());
        pid_t pid;
        if (!strcmp(name, "redis-server")) {
            const char *argv[] = {path,
                                  "--tls-port",
                                  port,
                                  "--port",
                                  "0",
                                  "--bind",
                                  "127.0.0.1",
                                  "--tls-cert-file",
                                  cert,
                                  "--tls-key-file",
                                  key,
                                  "--tls-ca-cert-file",
                                  ca,
                                  "--tls-auth-clients",
                                  "no",
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--client-output-buffer-limit",
                                  "pubsub 0 0 0",
                                  "--daemonize",
                                  "no",
                                  NULL};
            pid = fs_spawn(argv, log, NULL);
        } else {
            const char *argv[] = {path,        "-a", "127.0.0.1", "-p", port, "--tls",
                                  "--tlscert", cert, "--tlskey",  key,  NULL};
            pid = fs_spawn(argv, log, NULL);
        }
        if (sp_wait_listening(atoi(port), pid, FS_START_MS)) {
            unlink(log);
            return pid;
        }
        sp_stop(pid);
    }
    fail_msg("%s did not start; see %s", name, log);
    return -1;
}

static void target_run(const char *proto, const char *server)
{
    char port[16], pid[16];
    pid_t sp = start_target(server, port, sizeof(port));
    snprintf(pid, sizeof(pid), "%d", (int)sp);
    /* 20 subscribers, 5 verified: both the parsing and the byte-counting reads decrypt. */
    const char *args[] = {"--proto", proto,
                          "--port",  port,
                          "--tls",   "--tls-ca",
                          ca,        "--subs",
                          "20",      "--pubs",
                          "2",       "--count",
                          "500",     "--size",
                          "256",     "--verify",
                          "5",       "--warmup",
                          "0",       "--server-pid",
                          pid,       "--expect-lossless",
                          NULL};
    struct fs_flood r;
    fs_flood_run(&r, args);
    sp_stop(sp);
    check_exact(&r, 2, 500, 20, 5);
    fs_flood_free(&r);
}

static void test_redis_tls(void **state)
{
    (void)state;
    target_run("redis", "redis-server");
}

/* nats-server 2.9 sends INFO in plain text, then the client upgrades before CONNECT. */
static void test_nats_tls(void **state)
{
    (void)state;
    target_run("nats", "nats-server");
}

int main(void)
{
    if (!fs_which("openssl", openssl, sizeof(openssl))) {
        fprintf(stderr, "the openssl command is not installed: skipped\n");
        return 77;
    }
    int rc = rc_init();
    if (rc != 0)
        return rc;
    if (make_certs() != 0) {
        fprintf(stderr, "cannot make the test certificates in %s\n", dir);
        remove_certs();
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ringcast_line, rc_teardown),
        cmocka_unit_test_teardown(test_ringcast_len32_auth, rc_teardown),
        cmocka_unit_test_teardown(test_ringcast_unverified, rc_teardown),
        cmocka_unit_test(test_redis_tls),
        cmocka_unit_test(test_nats_tls),
    };
    int failed = cmocka_run_group_tests_name("flood_tls", tests, NULL, NULL);
    remove_certs();
    return failed;
}
