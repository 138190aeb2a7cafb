/*
 * TLS listeners (--listen ADDR:PORT,tls, --tls-cert, --tls-key, --tls-client-ca,
 * --max-tls-handshakes): frames between TLS clients (`openssl s_client`, ringcast-cat --tls) and
 * plain ones both ways, TLS 1.2 as the floor, every handshake failure reason (log line, metric,
 * the connection closed), client certificates and their OU roles, AUTH inside TLS, SIGHUP
 * reloading the certificate (and keeping it when the new pair is bad), the expiry metric, and
 * start-up refusals. No key material may ever show in the relay's output.
 *
 * The certificates are made at run time with the openssl CLI into a temporary directory, removed
 * at the end (nothing is committed): a CA; server certificates for 127.0.0.1 and localhost (two,
 * for the reload); client certificates with OU=pub, sub, other and none; one issued by another
 * CA and an expired one. EC P-256 keys, quick to make. Without the openssl CLI every test is
 * skipped.
 *
 * Every wait is bounded; nothing sleeps to pass.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define RUN_MS 10000
#define QUIET_MS 300 /* a negative check: passing it proves nothing, failing it is a real error */
#define MAX_PROCS 12

#define TOK_BOTH "Both-tls-Jd6Fg2Hs8k"
#define TOK_BAD "Guess-tls-Zz0Yy9Xx8"

/* ------------------------------------------------------------------ child processes */

static struct sp_child procs[MAX_PROCS];
static size_t nprocs;

static const char *cat_bin(void)
{
    const char *bin = getenv("RINGCAST_CAT_BIN");
    if (!bin || !*bin)
        fail_msg("RINGCAST_CAT_BIN is not set");
    return bin;
}

static const char *openssl_bin(void)
{
    static char path[512];
    return *path ? path : sp_which("openssl", path, sizeof(path));
}

/* Starts BIN ARGS (NULL-terminated) with its standard streams piped; RINGCAST_AUTH is never
 * passed on. */
static struct sp_child *proc_start(const char *bin, const char *const *args)
{
    if (nprocs >= MAX_PROCS)
        fail_msg("too many child processes in one test");
    const char *argv[32] = {bin};
    size_t na = 1;
    for (; args[na - 1]; na++) {
        if (na + 1 >= sizeof(argv) / sizeof(argv[0]))
            fail_msg("too many arguments");
        argv[na] = args[na - 1];
    }
    argv[na] = NULL;
    struct sp_child *p = &procs[nprocs++];
    sp_child_start(p, argv, "RINGCAST_AUTH=", NULL);
    return p;
}

static const char *proc_err(struct sp_child *p)
{
    return sp_child_err(p);
}

static void proc_write_str(struct sp_child *p, const char *s)
{
    if (sp_child_write(p, s, strlen(s), RC_IO_MS) == 0)
        return;
    if (errno == ETIMEDOUT)
        fail_msg("a child did not read its standard input within %d ms", RC_IO_MS);
    fail_msg("writing to a child's standard input: %s", strerror(errno));
}

/* Reads exactly strlen(want) bytes of its standard output within RC_IO_MS and checks them. */
static void proc_expect_str(struct sp_child *p, const char *want)
{
    size_t len = strlen(want);
    char got[1024];
    assert_true(len < sizeof(got));
    const char *why;
    size_t done = sp_child_read(p, got, len, RC_IO_MS, &why);
    got[done] = '\0';
    if (done != len || memcmp(got, want, len) != 0)
        fail_msg("pid %d printed \"%s\" (%s), want \"%s\"; its stderr: %s", (int)p->pid, got,
                 done == len ? "content" : why, want, proc_err(p));
}

/* Waits for it to exit (RC_WAIT_MS); returns its exit code. */
static int proc_wait(struct sp_child *p)
{
    int code = sp_wait(p->pid, RC_WAIT_MS);
    if (code == -2)
        fail_msg("pid %d did not exit within %d ms; stderr: %s", (int)p->pid, RC_WAIT_MS,
                 proc_err(p));
    p->pid = 0;
    return code;
}

/* ------------------------------------------------------------------ certificates */

static char tls_dir[256];

/* $tls_dir/name, in one of 32 rotating buffers (an argument list uses several at once). */
static const char *tfile(const char *name)
{
    static char bufs[32][600];
    static unsigned next;
    char *b = bufs[next++ % 32];
    snprintf(b, sizeof(bufs[0]), "%s/%s", tls_dir, name);
    return b;
}

/* NAME.pem or NAME.key in the directory. */
static const char *pem(const char *name)
{
    char n[128];
    snprintf(n, sizeof(n), "%s.pem", name);
    return tfile(n);
}

static const char *key(const char *name)
{
    char n[128];
    snprintf(n, sizeof(n), "%s.key", name);
    return tfile(n);
}

/* Runs openssl ARGS; its standard output, malloc'ed. Fails the test unless it exits 0. */
static char *openssl_out(const char *const *args)
{
    const char *argv[40] = {openssl_bin()};
    size_t n = 1;
    for (; args[n - 1] && n < 39; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    char *out, *err;
    int code = sp_run(argv, RC_IO_MS, &out, &err);
    if (code != 0)
        fail_msg("openssl %s %s: exit %d: %s", args[0], args[1] ? args[1] : "", code, err);
    free(err);
    return out;
}

static void openssl_run(const char *const *args)
{
    free(openssl_out(args));
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        fail_msg("%s: %s", path, strerror(errno));
}

/* NAME.key and NAME.pem: a self-signed CA when @ca is NULL, else issued by CA.pem with the
 * extensions @ext, the serial @serial and @days of validity (-1: already expired). */
static void make_cert(const char *name, const char *subj, const char *ca, const char *ext,
                      const char *serial, const char *days)
{
    char csr[128], extf[128];
    snprintf(csr, sizeof(csr), "%s.csr", name);
    snprintf(extf, sizeof(extf), "%s.ext", name);
    if (!ca) {
        openssl_run((const char *const[]){"req", "-x509", "-newkey", "ec", "-pkeyopt",
                                          "ec_paramgen_curve:P-256", "-nodes", "-keyout", key(name),
                                          "-out", pem(name), "-days", days, "-subj", subj, NULL});
        return;
    }
    openssl_run((const char *const[]){"req", "-new", "-newkey", "ec", "-pkeyopt",
                                      "ec_paramgen_curve:P-256", "-nodes", "-keyout", key(name),
                                      "-out", tfile(csr), "-subj", subj, NULL});
    write_text(tfile(extf), ext);
    openssl_run((const char *const[]){"x509", "-req", "-in", tfile(csr), "-CA", pem(ca), "-CAkey",
                                      key(ca), "-set_serial", serial, "-days", days, "-extfile",
                                      tfile(extf), "-out", pem(name), NULL});
}

static const char server_ext[] = "basicConstraints=CA:FALSE\n"
                                 "extendedKeyUsage=serverAuth\n"
                                 "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n";
static const char client_ext[] = "basicConstraints=CA:FALSE\n"
                                 "extendedKeyUsage=clientAuth\n";

static int group_setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(tls_dir, sizeof(tls_dir), "%s/ringcast-test-tls-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tls_dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tls_dir, strerror(errno));
        *tls_dir = '\0';
        return -1;
    }
    make_cert("ca", "/CN=ringcast test CA", NULL, NULL, NULL, "30");
    make_cert("server", "/CN=ringcast test server", "ca", server_ext, "0x1001", "30");
    make_cert("server2", "/CN=ringcast test server 2", "ca", server_ext, "0x1002", "60");
    make_cert("pub", "/CN=publisher/OU=pub", "ca", client_ext, "0x2001", "30");
    make_cert("sub", "/CN=subscriber/OU=sub", "ca", client_ext, "0x2002", "30");
    make_cert("other", "/CN=anyone/OU=other", "ca", client_ext, "0x2003", "30");
    make_cert("no-ou", "/CN=nobody in particular", "ca", client_ext, "0x2005", "30");
    make_cert("expired", "/CN=expired/OU=pub", "ca", client_ext, "0x2004", "-1");
    make_cert("rogue-ca", "/CN=another CA", NULL, NULL, NULL, "30");
    make_cert("rogue", "/CN=rogue/OU=pub", "rogue-ca", client_ext, "0x3001", "30");
    /* --tls-cert is a chain: a server certificate of an intermediate CA, then that CA's. */
    make_cert("inter", "/CN=ringcast test intermediate CA", "ca",
              "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n", "0x4001", "30");
    make_cert("leaf", "/CN=ringcast test server via the intermediate", "inter", server_ext,
              "0x4002", "30");
    char *leaf = sp_slurp(pem("leaf")), *inter = sp_slurp(pem("inter")), *k = sp_slurp(key("leaf"));
    if (!leaf || !inter || !k)
        return -1;
    size_t n = strlen(leaf) + strlen(inter) + 1;
    char *chain = malloc(n);
    snprintf(chain, n, "%s%s", leaf, inter);
    write_text(pem("chain"), chain);
    write_text(key("chain"), k);
    free(chain);
    free(leaf);
    free(inter);
    free(k);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (!*tls_dir)
        return 0;
    DIR *d = opendir(tls_dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.')
            unlink(tfile(e->d_name));
    if (d)
        closedir(d);
    rmdir(tls_dir);
    return 0;
}

/* Copies a file (the reload test's live certificate and key). */
static void copy_file(const char *from, const char *to)
{
    char *text = sp_slurp(from);
    if (!text)
        fail_msg("cannot read %s", from);
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.new", to);
    write_text(tmp, text);
    chmod(tmp, 0600);
    if (rename(tmp, to) != 0)
        fail_msg("rename %s: %s", to, strerror(errno));
    free(text);
}

/* The notAfter of a certificate file, seconds since the epoch. */
static double not_after(const char *cert)
{
    char *out = openssl_out((const char *const[]){"x509", "-in", cert, "-noout", "-enddate", NULL});
    struct tm tm = {0};
    const char *p = strstr(out, "notAfter=");
    if (!p || !strptime(p + 9, "%b %d %H:%M:%S %Y GMT", &tm))
        fail_msg("openssl x509 -enddate: \"%s\"", out);
    free(out);
    return (double)timegm(&tm);
}

/* ------------------------------------------------------------------ the relay */

struct tsrv {
    struct rc_server *s;
    int mport; /* /metrics */
    int port;  /* the first TLS listener */
};

/* Scrapes until @name equals @want (bounded); fails with the scrape otherwise. */
static void wait_sample(const struct tsrv *t, const char *name, double want)
{
    rc_metrics_wait(t->s, t->mport, name, want);
}

static double metric(const struct tsrv *t, const char *name)
{
    char *text = rc_metrics_get(t->s, t->mport);
    double v = rc_metrics_sample(text, name);
    free(text);
    return v;
}

#define HANDSHAKES "ringcast_tls_handshakes_total"
#define FAILURES(reason) "ringcast_tls_handshake_failures_total{reason=\"" reason "\"}"
#define EXPIRY "ringcast_tls_certificate_expiry_seconds"
#define RELOADS "ringcast_tls_reloads_total"
#define RELOAD_FAILURES "ringcast_tls_reload_failures_total"

/*
 * A relay with /metrics, a TLS listener flagged @flags ("role=both,tls") whose certificate is
 * @cert.pem/@cert.key, and @extra arguments (more listeners among them).
 */
static struct tsrv start_tls(const char *flags, const char *cert, const char *const *extra)
{
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:0,%s", flags);
    const char *argv[40] = {"--metrics",  "127.0.0.1:0", "--listen",  listen,
                            "--tls-cert", pem(cert),     "--tls-key", key(cert)};
    size_t n = 8;
    for (size_t i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    struct rc_opts o = {.argv = argv};
    struct tsrv t = {.s = rc_start_ex(&o)};
    char line[256];
    if (!rc_log_wait(t.s, 0, "Metrics at: http://127.0.0.1:", RC_WAIT_MS) ||
        !rc_log_find(t.s, 0, "Metrics at: http://127.0.0.1:", line, sizeof(line)))
        fail_msg("no \"Metrics at:\" line");
    t.mport = atoi(strstr(line, "http://127.0.0.1:") + strlen("http://127.0.0.1:"));
    t.port = rc_listener_port(t.s, flags, NULL, 0, NULL, 0);
    return t;
}

/* Nothing the relay printed holds key material or a PEM block of any kind. */
static void expect_no_key_material(struct rc_server *s)
{
    static const char *const bad[] = {"BEGIN", "PRIVATE KEY", "-----"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (rc_log_count(s, 0, bad[i]) || rc_err_contains(s, bad[i])) {
            rc_dump(s);
            fail_msg("\"%s\" shows in the relay's output", bad[i]);
        }
}

/* Waits for a line containing @needle on stdout or stderr (after @mark on stdout). */
static void wait_out_or_err(struct rc_server *s, size_t mark, const char *needle)
{
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    while (!rc_log_count(s, mark, needle) && !rc_err_contains(s, needle)) {
        if (sp_remaining_ms(deadline) == 0) {
            rc_dump(s);
            fail_msg("no line \"%s\"", needle);
        }
        sp_nap_ms(10);
    }
}

/* ------------------------------------------------------------------ TLS clients */

/* `openssl s_client -connect 127.0.0.1:PORT -CAfile ca.pem -quiet` plus @extra: what goes into
 * its standard input is sent, what it receives comes out of its standard output. */
static struct sp_child *s_client(int port, const char *const *extra)
{
    char where[32];
    snprintf(where, sizeof(where), "127.0.0.1:%d", port);
    const char *args[24] = {"s_client", "-connect", where, "-CAfile", pem("ca"), "-quiet"};
    size_t n = 6;
    for (size_t i = 0; extra && extra[i] && n < 23; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return proc_start(openssl_bin(), args);
}

/* ringcast-cat --tls --ca ca.pem ARGS... HOST:PORT, HOST "127.0.0.1" or "[::1]". */
static struct sp_child *cat_tls_at(const char *host, int port, const char *const *args)
{
    const char *argv[20] = {"--tls", "--ca", pem("ca")};
    size_t n = 3;
    for (size_t i = 0; args && args[i] && n < 18; i++)
        argv[n++] = args[i];
    char where[48];
    snprintf(where, sizeof(where), "%s:%d", host, port);
    argv[n++] = where;
    argv[n] = NULL;
    return proc_start(cat_bin(), argv);
}

/* ringcast-cat --tls --ca ca.pem ARGS... 127.0.0.1:PORT */
static struct sp_child *cat_tls(int port, const char *const *args)
{
    return cat_tls_at("127.0.0.1", port, args);
}

/* A client certificate's arguments for ringcast-cat. */
#define CERT(name) "--cert", pem(name), "--key", key(name)

/* The serial number of the certificate the listener at @port serves now, as "1001". A new
 * s_client, with /dev/null as its input: it connects, prints the certificate, and leaves. */
static void served_serial(int port, char *serial, size_t cap)
{
    char where[32];
    snprintf(where, sizeof(where), "127.0.0.1:%d", port);
    char *out = openssl_out(
        (const char *const[]){"s_client", "-connect", where, "-CAfile", pem("ca"), NULL});
    char path[700];
    snprintf(path, sizeof(path), "%s/served.txt", tls_dir);
    write_text(path, out);
    free(out);
    char *x = openssl_out((const char *const[]){"x509", "-in", path, "-noout", "-serial", NULL});
    char *p = strstr(x, "serial=");
    if (!p)
        fail_msg("openssl x509 -serial: \"%s\"", x);
    p += 7;
    p[strcspn(p, "\r\n")] = '\0';
    snprintf(serial, cap, "%s", p);
    free(x);
}

/* A raw TCP client of the TLS listener (it speaks no TLS unless the test does). */
static int raw_client(const struct tsrv *t)
{
    return rc_connect_opts(t->s, "127.0.0.1", &(struct rc_sockopts){.port = t->port});
}

/* Waits until the relay closes @fd; true when it sent nothing but (at most) a TLS alert. */
static bool closed_quietly(int fd)
{
    uint8_t buf[512];
    size_t n = rc_recv_until_eof(fd, buf, sizeof(buf), RC_IO_MS);
    if (n == (size_t)-1)
        fail_msg("the relay did not close the connection within %d ms", RC_IO_MS);
    return n == 0 || buf[0] == 0x15; /* an alert record */
}

static int teardown(void **state)
{
    for (size_t i = 0; i < nprocs; i++)
        sp_child_reap(&procs[i]);
    nprocs = 0;
    return rc_teardown(state);
}

/* ------------------------------------------------------------------ tests */

/*
 * openssl s_client and ringcast-cat --tls publish to a plain client on the default listener and
 * receive what it publishes; the handshakes are counted, the expiry metric is the certificate's
 * notAfter.
 */
static void test_tls_both_ways(void **state)
{
    struct tsrv t = start_tls("role=both,tls", "server", NULL);
    int plain = rc_connect(t.s);
    wait_sample(&t, EXPIRY, not_after(pem("server")));

    /* The TLS client publishes first: once the plain one has its line, the relay registered it
     * (the frame came from it), so what the plain one publishes next reaches it. */
    struct sp_child *sc = s_client(t.port, NULL);
    proc_write_str(sc, "from s_client\n");
    rc_expect_str(plain, "from s_client\n");
    rc_send_str(plain, "to s_client\n");
    proc_expect_str(sc, "to s_client\n");
    wait_sample(&t, HANDSHAKES, 1);

    struct sp_child *cat = cat_tls(t.port, NULL);
    proc_write_str(cat, "from ringcast-cat\n");
    rc_expect_str(plain, "from ringcast-cat\n");
    proc_expect_str(sc, "from ringcast-cat\n"); /* TLS to TLS too */
    rc_send_str(plain, "to both\n");
    proc_expect_str(cat, "to both\n");
    proc_expect_str(sc, "to both\n");
    proc_write_str(sc, "from s_client again\n");
    proc_expect_str(cat, "from s_client again\n");
    rc_expect_str(plain, "from s_client again\n");
    wait_sample(&t, HANDSHAKES, 2);

    kill(cat->pid, SIGINT);
    assert_int_equal(proc_wait(cat), 0);
    assert_string_equal(proc_err(cat), "");
    assert_true(rc_quiet(plain, QUIET_MS)); /* nothing else arrived, and no TLS bytes */
    expect_no_key_material(t.s);
}

/* A TLS listener on ::1 beside a publish-only one on 127.0.0.1: ringcast-cat --tls checks the
 * certificate for ::1 (its IP SAN), publishes to a plain IPv4 client and receives from it; the
 * relay logs the client as [::1]:PORT. */
static void test_tls_ipv6(void **state)
{
    struct tsrv t = start_tls("role=pub,tls", "server",
                              (const char *const[]){"--listen", "[::1]:0,role=both,tls", NULL});
    char host[64];
    int port6 = rc_listener_port(t.s, "role=both,tls", host, sizeof(host), NULL, 0);
    assert_string_equal(host, "::1");
    int plain = rc_connect(t.s);
    size_t mark = rc_log_mark(t.s);

    struct sp_child *six = cat_tls_at("[::1]", port6, NULL);
    proc_write_str(six, "from six\n");
    rc_expect_str(plain, "from six\n");
    rc_send_str(plain, "to six\n");
    proc_expect_str(six, "to six\n");
    wait_sample(&t, HANDSHAKES, 1);
    if (!rc_log_wait(t.s, mark, "[::1]:", RC_WAIT_MS))
        fail_msg("no [::1] client in the log");

    kill(six->pid, SIGINT);
    assert_int_equal(proc_wait(six), 0);
    assert_string_equal(proc_err(six), "");
}

/* --tls-cert holds the chain: a client that trusts only the root CA verifies the relay. */
static void test_tls_chain(void **state)
{
    struct tsrv t = start_tls("role=both,tls", "chain", NULL);
    int plain = rc_connect(t.s);
    struct sp_child *c = cat_tls(t.port, NULL);
    proc_write_str(c, "through the chain\n");
    rc_expect_str(plain, "through the chain\n");
    wait_sample(&t, EXPIRY, not_after(pem("leaf")));
    kill(c->pid, SIGINT);
    assert_int_equal(proc_wait(c), 0);
    assert_string_equal(proc_err(c), "");
}

/* len32 framing inside TLS, both ways (ringcast-cat --framing len32). */
static void test_tls_len32(void **state)
{
    static const char *const extra[] = {"--framing", "len32", NULL};
    struct tsrv t = start_tls("role=both,tls", "server", extra);
    int plain = rc_connect(t.s);
    struct sp_child *c = cat_tls(t.port, (const char *const[]){"--framing", "len32", NULL});
    proc_write_str(c, "abc\n\n");
    rc_expect(plain,
              "\0\0\0\x03"
              "abc\0\0\0\0",
              11);
    uint8_t wire[32];
    size_t n = rc_make_len32(wire, "x\ny", 3);
    n += rc_make_len32(wire + n, "", 0);
    rc_send(plain, wire, n);
    proc_expect_str(c, "x\ny\n\n");
    kill(c->pid, SIGINT);
    assert_int_equal(proc_wait(c), 0);
}

/* TLS 1.2 and 1.3 are taken; TLS 1.1 is refused (counted as a protocol failure) even from a
 * client that would settle for it. */
static void test_tls_version_floor(void **state)
{
    struct tsrv t = start_tls("role=both,tls", "server", NULL);
    char where[32];
    snprintf(where, sizeof(where), "127.0.0.1:%d", t.port);
    static const char *const ok[] = {"-tls1_2", "-tls1_3"};
    static const char *const want[] = {"New, TLSv1.2, Cipher is ", "New, TLSv1.3, Cipher is "};
    for (int i = 0; i < 2; i++) {
        char *out = openssl_out((const char *const[]){"s_client", "-connect", where, "-CAfile",
                                                      pem("ca"), ok[i], NULL});
        if (!strstr(out, want[i]) || !strstr(out, "Verify return code: 0 (ok)"))
            fail_msg("s_client %s:\n%s", ok[i], out);
        free(out);
    }
    wait_sample(&t, HANDSHAKES, 2);

    const char *argv[] = {openssl_bin(), "s_client", "-connect",           where,
                          "-tls1_1",     "-cipher",  "DEFAULT@SECLEVEL=0", NULL};
    char *out, *err;
    int code = sp_run(argv, RC_IO_MS, &out, &err);
    if (code == 0 || strstr(out, "BEGIN CERTIFICATE")) /* refused at its ClientHello */
        fail_msg("s_client -tls1_1: exit %d (want a failure), stdout:\n%s\nstderr:\n%s", code, out,
                 err);
    free(out);
    free(err);
    wait_sample(&t, FAILURES("protocol"), 1);
    assert_int_equal(metric(&t, HANDSHAKES), 2);

    /* No renegotiation: s_client's "R" command asks for one (TLS 1.2) and is refused. */
    int plain = rc_connect(t.s);
    struct sp_child *sc =
        proc_start(openssl_bin(), (const char *const[]){"s_client", "-connect", where, "-CAfile",
                                                        pem("ca"), "-tls1_2", NULL});
    proc_write_str(sc, "before\n");
    rc_expect_str(plain, "before\n");
    proc_write_str(sc, "R\n");
    int rcode = proc_wait(sc);
    if (rcode == 0 || !strstr(proc_err(sc), "no renegotiation"))
        fail_msg("renegotiation: s_client exit %d, stderr:\n%s", rcode, proc_err(sc));
    assert_true(rc_quiet(plain, QUIET_MS));
}

/* Plain text on the TLS port: closed, counted as protocol, never relayed. */
static void test_tls_garbage(void **state)
{
    struct tsrv t = start_tls("role=both,tls", "server", NULL);
    int plain = rc_connect(t.s);
    size_t mark = rc_log_mark(t.s);
    int fd = raw_client(&t);
    rc_send_lenient(fd, "hello, plain text\n", 18, RC_IO_MS);
    assert_true(closed_quietly(fd));
    wait_sample(&t, FAILURES("protocol"), 1);
    rc_wait_client_log(t.s, mark, rc_port_of(fd), "disconnected (tls: ");

    /* An HTTP request, and AUTH in clear text, are no better. */
    static const char *const junk[] = {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "AUTH token\n"};
    for (int i = 0; i < 2; i++) {
        fd = raw_client(&t);
        rc_send_lenient(fd, junk[i], strlen(junk[i]), RC_IO_MS);
        assert_true(closed_quietly(fd));
        wait_sample(&t, FAILURES("protocol"), 2 + i);
    }
    assert_true(rc_quiet(plain, QUIET_MS));
    assert_int_equal(metric(&t, HANDSHAKES), 0);
}

/* A client that connects and sends nothing is closed after --auth-timeout (timeout). */
static void test_tls_handshake_timeout(void **state)
{
    static const char *const extra[] = {"--auth-timeout", "0.5", NULL};
    struct tsrv t = start_tls("role=both,tls", "server", extra);
    size_t mark = rc_log_mark(t.s);
    int64_t t0 = rc_now_ms();
    int fd = raw_client(&t);
    assert_true(closed_quietly(fd));
    int64_t took = rc_now_ms() - t0;
    if (took < 400)
        fail_msg("closed after %lld ms, before --auth-timeout 0.5", (long long)took);
    wait_sample(&t, FAILURES("timeout"), 1);
    rc_wait_client_log(t.s, mark, rc_port_of(fd), "disconnected (tls: ");

    /* Half a ClientHello is no better. */
    fd = raw_client(&t);
    rc_send(fd, "\x16\x03\x01\x00\xf0\x01\x00", 7);
    assert_true(closed_quietly(fd));
    wait_sample(&t, FAILURES("timeout"), 2);
    assert_int_equal(metric(&t, FAILURES("protocol")), 0);
}

/* --max-tls-handshakes 1: while one handshake is held half done, another TLS connection is
 * closed at once (busy); once it is gone, handshakes proceed again. */
static void test_tls_max_handshakes(void **state)
{
    static const char *const extra[] = {"--max-tls-handshakes", "1", "--auth-timeout", "60", NULL};
    struct tsrv t = start_tls("role=both,tls", "server", extra);
    int plain = rc_connect(t.s);
    int base = rc_fd_count(t.s);
    int held = raw_client(&t);
    rc_send(held, "\x16\x03\x01\x00\xf0\x01\x00", 7); /* a ClientHello that never ends */
    if (rc_wait_fd_count(t.s, base + 1, RC_WAIT_MS) != base + 1)
        fail_msg("the relay never accepted the held connection");

    int64_t t0 = rc_now_ms();
    int second = raw_client(&t);
    assert_true(closed_quietly(second));
    if (rc_now_ms() - t0 > 5000)
        fail_msg("the second connection was closed only after %lld ms",
                 (long long)(rc_now_ms() - t0));
    wait_sample(&t, FAILURES("busy"), 1);
    /* The spec's line would be "disconnected (tls: ...)." for this client; the relay logs a
     * warning (at most once a second) instead. Either says why. */
    int64_t log_deadline = rc_now_ms() + RC_WAIT_MS;
    char needle[64];
    rc_needle(needle, sizeof(needle), rc_port_of(second), "disconnected (tls: ");
    while (!rc_log_count(t.s, 0, needle) && !rc_log_count(t.s, 0, "--max-tls-handshakes") &&
           !rc_err_contains(t.s, "--max-tls-handshakes")) {
        if (sp_remaining_ms(log_deadline) == 0) {
            rc_dump(t.s);
            fail_msg("nothing in the log says why a TLS connection was closed at once");
        }
        sp_nap_ms(10);
    }
    /* A complete client is refused too. */
    struct sp_child *c = cat_tls(t.port, (const char *const[]){"--sub-only", NULL});
    assert_int_equal(proc_wait(c), 1);
    wait_sample(&t, FAILURES("busy"), 2);

    /* The held one is still there, unharmed by the refusals; once it leaves, the slot is free. */
    char b[16];
    assert_int_equal(rc_recv_now(held, b, sizeof(b)), 0);
    rc_close(held);
    if (rc_wait_fd_count(t.s, base, RC_WAIT_MS) != base)
        fail_msg("the relay did not close the held connection");
    struct sp_child *sc = s_client(t.port, NULL);
    proc_write_str(sc, "after the held one\n");
    rc_expect_str(plain, "after the held one\n");
    wait_sample(&t, HANDSHAKES, 1);
    assert_int_equal(metric(&t, FAILURES("timeout")), 0);
}

/*
 * Moves @out (written to @wfd, a pipe or a socket) while reading @in_len bytes from @rfd into @in,
 * both at once so that neither side stalls the relay; fails the test after RC_IO_MS.
 */
static void pump(int wfd, const char *out, size_t out_len, int rfd, char *in, size_t in_len)
{
    size_t wrote = 0, got = 0;
    fcntl(wfd, F_SETFL, fcntl(wfd, F_GETFL) | O_NONBLOCK);
    int64_t deadline = rc_now_ms() + RC_IO_MS;
    while (got < in_len) {
        struct pollfd pfd[2] = {{.fd = rfd, .events = POLLIN},
                                {.fd = wrote < out_len ? wfd : -1, .events = POLLOUT}};
        if (sp_remaining_ms(deadline) == 0)
            fail_msg("moved %zu of %zu bytes out and %zu of %zu in within %d ms", wrote, out_len,
                     got, in_len, RC_IO_MS);
        poll(pfd, 2, sp_remaining_ms(deadline));
        if (pfd[1].revents) {
            ssize_t n = write(wfd, out + wrote, out_len - wrote);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                fail_msg("write: %s", strerror(errno));
            wrote += n > 0 ? (size_t)n : 0;
        }
        if (pfd[0].revents) {
            ssize_t n = read(rfd, in + got, in_len - got);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                fail_msg("read: %s after %zu of %zu bytes", n ? strerror(errno) : "EOF", got,
                         in_len);
            got += n > 0 ? (size_t)n : 0;
        }
    }
}

/*
 * ringcast-cat --tls in bulk, far beyond what socket buffers hold: --pub-only publishes 4 MiB of
 * lines to a plain subscriber and exits 0 once the relay has taken them all (close_notify and
 * FIN, then the relay's close); --sub-only prints 4 MiB that a plain client publishes, in order.
 */
static void test_tls_cat_bulk(void **state)
{
    static const char *const extra[] = {"--max-queue", "64M", NULL};
    struct tsrv t = start_tls("role=both,tls", "server", extra);
    int plain = rc_connect(t.s);
    enum { LINE = 128, N = 32 * 1024 };
    size_t len = (size_t)LINE * N;
    char *data = malloc(len), *in = malloc(len);
    assert_true(data && in);
    for (uint32_t i = 0; i < N; i++)
        rc_make_line(data + (size_t)i * LINE, LINE, "tls", i);

    struct sp_child *pub = cat_tls(t.port, (const char *const[]){"--pub-only", NULL});
    pump(pub->in, data, len, plain, in, len);
    if (memcmp(in, data, len) != 0)
        fail_msg("the plain subscriber got other bytes than ringcast-cat --tls published");
    sp_child_close_in(pub);
    assert_int_equal(proc_wait(pub), 0);
    assert_string_equal(proc_err(pub), "");

    struct sp_child *sub = cat_tls(t.port, (const char *const[]){"--sub-only", NULL});
    wait_sample(&t, HANDSHAKES, 2);
    memset(in, 0, len);
    pump(plain, data, len, sub->out, in, len);
    if (memcmp(in, data, len) != 0)
        fail_msg("ringcast-cat --tls printed other bytes than the plain client published");
    kill(sub->pid, SIGTERM);
    assert_int_equal(proc_wait(sub), 0);
    assert_string_equal(proc_err(sub), "");
    free(data);
    free(in);
}

/*
 * --tls-client-ca: no certificate, one of another CA, an expired one are refused (client_cert); a
 * client certificate's OU intersects its role with the listener's: OU=sub on a role=both listener
 * receives and is disconnected when it sends; OU=pub on a role=sub listener is refused (role);
 * OU=other, or none, is not restricted.
 */
static void test_tls_client_certs(void **state)
{
    const char *extra[] = {"--tls-client-ca", pem("ca"), "--listen", "127.0.0.1:0,role=sub,tls",
                           NULL};
    struct tsrv t = start_tls("role=both,tls", "server", extra);
    int sub_port = rc_listener_port(t.s, "role=sub,tls", NULL, 0, NULL, 0);
    int plain = rc_connect(t.s);
    double refused = 0;

    /* No certificate: ringcast-cat and s_client. */
    size_t mark = rc_log_mark(t.s);
    struct sp_child *c = cat_tls(t.port, (const char *const[]){"--sub-only", NULL});
    assert_int_equal(proc_wait(c), 1);
    wait_sample(&t, FAILURES("client_cert"), ++refused);
    assert_true(rc_log_wait(t.s, mark, "disconnected (tls: ", RC_WAIT_MS));
    struct sp_child *sc = s_client(t.port, NULL);
    proc_write_str(sc, "no certificate\n");
    wait_sample(&t, FAILURES("client_cert"), ++refused);
    (void)proc_wait(sc); /* refused: it ends (its exit code differs between OpenSSL versions) */

    /* Another CA's, and an expired one of the right CA. */
    static const char *const bad[] = {"rogue", "expired"};
    for (int i = 0; i < 2; i++) {
        c = cat_tls(t.port, (const char *const[]){"--sub-only", CERT(bad[i]), NULL});
        int code = proc_wait(c);
        if (code != 1)
            fail_msg("%s certificate: ringcast-cat exit %d: %s", bad[i], code, proc_err(c));
        wait_sample(&t, FAILURES("client_cert"), ++refused);
    }

    /* OU=pub on a role=sub listener: nothing left of its role. */
    c = cat_tls(sub_port, (const char *const[]){"--sub-only", CERT("pub"), NULL});
    assert_int_equal(proc_wait(c), 1);
    wait_sample(&t, FAILURES("role"), 1);
    /* The role is known only from the certificate, once the handshake completed: that one is
     * counted as completed, then refused. */
    assert_int_equal(metric(&t, HANDSHAKES), 1);
    assert_true(rc_quiet(plain, QUIET_MS)); /* nothing any of them sent was relayed */

    /* OU=other: publishes and receives, like a plain client. */
    struct sp_child *other = cat_tls(t.port, (const char *const[]){CERT("other"), NULL});
    proc_write_str(other, "from OU=other\n");
    rc_expect_str(plain, "from OU=other\n");
    rc_send_str(plain, "to OU=other\n");
    proc_expect_str(other, "to OU=other\n");
    /* No OU at all: not restricted either. */
    struct sp_child *no_ou =
        cat_tls(t.port, (const char *const[]){"--pub-only", CERT("no-ou"), NULL});
    proc_write_str(no_ou, "from no OU\n");
    rc_expect_str(plain, "from no OU\n");
    proc_expect_str(other, "from no OU\n");

    /* OU=sub on a role=both listener: receives... */
    struct sp_child *sub = cat_tls(t.port, (const char *const[]){CERT("sub"), NULL});
    wait_sample(&t, HANDSHAKES, 4);
    rc_send_str(plain, "to OU=sub\n");
    proc_expect_str(sub, "to OU=sub\n");
    proc_expect_str(other, "to OU=sub\n");
    /* ...and is disconnected when it sends, with nothing relayed. */
    mark = rc_log_mark(t.s);
    proc_write_str(sub, "from OU=sub\n");
    assert_int_equal(proc_wait(sub), 1);
    assert_true(rc_log_wait(t.s, mark, "disconnected (protocol violation", RC_WAIT_MS));
    assert_true(rc_quiet(plain, QUIET_MS));

    /* OU=sub receives on the role=sub listener, and OU=pub publishes on the role=both one. */
    struct sp_child *sub2 =
        cat_tls(sub_port, (const char *const[]){"--sub-only", CERT("sub"), NULL});
    struct sp_child *pub = cat_tls(t.port, (const char *const[]){"--pub-only", CERT("pub"), NULL});
    wait_sample(&t, HANDSHAKES, 6);
    proc_write_str(pub, "from OU=pub\n");
    rc_expect_str(plain, "from OU=pub\n");
    proc_expect_str(sub2, "from OU=pub\n");
    proc_expect_str(other, "from OU=pub\n");
    expect_no_key_material(t.s);
}

/* --auth-file with a TLS listener: AUTH is the first frame inside TLS; a bad token closes. */
static void test_tls_auth_inside(void **state)
{
    char path[256];
    int fd = sp_tmp_file(path, sizeof(path), "tls-auth");
    static const char file[] = "both " TOK_BOTH "\n";
    if (write(fd, file, sizeof(file) - 1) != (ssize_t)sizeof(file) - 1)
        fail_msg("writing %s: %s", path, strerror(errno));
    close(fd);
    chmod(path, 0600);
    const char *extra[] = {"--auth-file", path, "--listen", "127.0.0.1:0,role=both,noauth", NULL};
    struct tsrv t = start_tls("role=both,tls", "server", extra);
    int open_port = rc_listener_port(t.s, "role=both,noauth", NULL, 0, NULL, 0);
    int plain = rc_connect_to(t.s, "127.0.0.1", open_port);

    struct sp_child *c = cat_tls(t.port, (const char *const[]){"--auth", TOK_BOTH, NULL});
    proc_write_str(c, "authenticated over TLS\n");
    rc_expect_str(plain, "authenticated over TLS\n"); /* not "AUTH ...": it was taken */
    rc_send_str(plain, "to the TLS client\n");
    proc_expect_str(c, "to the TLS client\n");

    size_t mark = rc_log_mark(t.s);
    struct sp_child *bad = cat_tls(t.port, (const char *const[]){"--auth", TOK_BAD, NULL});
    proc_write_str(bad, "must not pass\n");
    assert_int_equal(proc_wait(bad), 1);
    assert_true(rc_log_wait(t.s, mark, "disconnected (auth failed: bad token).", RC_WAIT_MS));
    /* No AUTH at all within TLS: the first frame is not AUTH. */
    struct sp_child *none = cat_tls(t.port, NULL);
    proc_write_str(none, "no token\n");
    assert_int_equal(proc_wait(none), 1);
    assert_true(rc_log_wait(t.s, mark, "disconnected (auth failed: ", RC_WAIT_MS));
    assert_true(rc_quiet(plain, QUIET_MS));
    assert_int_equal(metric(&t, HANDSHAKES), 3);
    for (int i = 0; i < 2; i++) {
        const char *tok = i ? TOK_BAD : TOK_BOTH;
        if (rc_log_count(t.s, 0, tok) || rc_err_contains(t.s, tok))
            fail_msg("a token shows in the relay's output");
    }
    unlink(path);
}

/*
 * SIGHUP: a new certificate (another serial and subject) is served to new connections while the
 * connection opened before keeps receiving; then a pair that does not match keeps the previous one,
 * logs why and counts a reload failure.
 */
static void test_tls_sighup_reload(void **state)
{
    copy_file(pem("server"), pem("live"));
    copy_file(key("server"), key("live"));
    struct tsrv t = start_tls("role=both,tls", "live", NULL);
    int plain = rc_connect(t.s);
    struct sp_child *before = cat_tls(t.port, NULL);
    proc_write_str(before, "hello before\n");
    rc_expect_str(plain, "hello before\n");
    char serial[64];
    served_serial(t.port, serial, sizeof(serial));
    assert_string_equal(serial, "1001");
    assert_int_equal(metric(&t, EXPIRY), not_after(pem("server")));

    copy_file(pem("server2"), pem("live"));
    copy_file(key("server2"), key("live"));
    size_t mark = rc_log_mark(t.s);
    rc_signal(t.s, SIGHUP);
    wait_out_or_err(t.s, mark, "SIGHUP: TLS certificate reloaded");
    wait_sample(&t, RELOADS, 1);
    served_serial(t.port, serial, sizeof(serial));
    assert_string_equal(serial, "1002");
    assert_int_equal(metric(&t, EXPIRY), not_after(pem("server2")));
    /* The connection from before goes on, both ways. */
    rc_send_str(plain, "after the reload\n");
    proc_expect_str(before, "after the reload\n");
    proc_write_str(before, "still here\n");
    rc_expect_str(plain, "still here\n");

    /* A key that does not match: the previous pair stays. */
    copy_file(key("pub"), key("live"));
    mark = rc_log_mark(t.s);
    rc_signal(t.s, SIGHUP);
    wait_out_or_err(t.s, mark, "SIGHUP: TLS certificate not reloaded: ");
    wait_out_or_err(t.s, mark, "keeping the previous one");
    wait_sample(&t, RELOAD_FAILURES, 1);
    assert_int_equal(metric(&t, RELOADS), 1);
    served_serial(t.port, serial, sizeof(serial));
    assert_string_equal(serial, "1002");
    assert_int_equal(metric(&t, EXPIRY), not_after(pem("server2")));
    rc_send_str(plain, "after the failed reload\n");
    proc_expect_str(before, "after the failed reload\n");
    assert_true(rc_alive(t.s));
    expect_no_key_material(t.s);
}

/* SIGHUP reloads the client CA too: certificates of the new CA are taken by new handshakes. */
static void test_tls_sighup_client_ca(void **state)
{
    copy_file(pem("rogue-ca"), pem("live-ca"));
    const char *extra[] = {"--tls-client-ca", pem("live-ca"), NULL};
    struct tsrv t = start_tls("role=both,tls", "server", extra);
    int plain = rc_connect(t.s);
    struct sp_child *c = cat_tls(t.port, (const char *const[]){"--sub-only", CERT("other"), NULL});
    assert_int_equal(proc_wait(c), 1);
    wait_sample(&t, FAILURES("client_cert"), 1);

    copy_file(pem("ca"), pem("live-ca"));
    size_t mark = rc_log_mark(t.s);
    rc_signal(t.s, SIGHUP);
    wait_out_or_err(t.s, mark, "SIGHUP: TLS certificate reloaded");
    wait_sample(&t, RELOADS, 1);
    c = cat_tls(t.port, (const char *const[]){CERT("other"), NULL});
    proc_write_str(c, "with the new CA\n");
    rc_expect_str(plain, "with the new CA\n");
    c = cat_tls(t.port, (const char *const[]){"--sub-only", CERT("rogue"), NULL});
    assert_int_equal(proc_wait(c), 1);
    wait_sample(&t, FAILURES("client_cert"), 2);
    expect_no_key_material(t.s);
}

/* Start-up: a TLS listener without --tls-cert or --tls-key exits 2; files that cannot be used
 * exit 1 with a message that holds no key material. */
static void test_tls_startup_refusals(void **state)
{
    write_text(tfile("empty.pem"), "");
    const struct {
        const char *argv[10];
        int want;
        const char *need;
    } cases[] = {
        {{"--listen", "127.0.0.1:0,tls", NULL}, 2, "--tls-cert"},
        {{"--listen", "127.0.0.1:0,tls", "--tls-cert", pem("server"), NULL}, 2, "--tls-key"},
        {{"--listen", "127.0.0.1:0,tls", "--tls-key", key("server"), NULL}, 2, "--tls-cert"},
        {{"--listen", "127.0.0.1:0,tls", "--tls-cert", pem("server"), "--tls-key", key("pub"),
          NULL},
         1,
         NULL},
        {{"--listen", "127.0.0.1:0,tls", "--tls-cert", tfile("missing.pem"), "--tls-key",
          key("server"), NULL},
         1,
         "missing.pem"},
        {{"--listen", "127.0.0.1:0,tls", "--tls-cert", tfile("empty.pem"), "--tls-key",
          key("server"), NULL},
         1,
         NULL},
        /* the key where the certificate goes, and the reverse */
        {{"--listen", "127.0.0.1:0,tls", "--tls-cert", key("server"), "--tls-key", pem("server"),
          NULL},
         1,
         NULL},
        {{"--listen", "127.0.0.1:0,tls", "--tls-cert", pem("server"), "--tls-key", key("server"),
          "--tls-client-ca", tfile("missing-ca.pem"), NULL},
         1,
         "missing-ca.pem"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rc_opts o = {.argv = cases[i].argv};
        char *out, *err;
        int status = rc_run(&o, RUN_MS, &out, &err);
        int code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (code != cases[i].want || !*err || (cases[i].need && !strstr(err, cases[i].need)) ||
            strstr(err, "BEGIN") || strstr(err, "PRIVATE KEY") || strstr(out, "BEGIN") ||
            strstr(out, "PRIVATE KEY") || strstr(out, "Server started"))
            fail_msg("case %zu: exit %d (want %d), stdout \"%s\", stderr \"%s\"", i, code,
                     cases[i].want, out, err);
        free(out);
        free(err);
    }
}

int main(void)
{
    int rc = rc_init();
    if (rc)
        return rc;
    if (!openssl_bin()) {
        fprintf(stderr, "test_tls: no openssl command: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tls_both_ways, teardown),
        cmocka_unit_test_teardown(test_tls_version_floor, teardown),
        cmocka_unit_test_teardown(test_tls_cat_bulk, teardown),
        cmocka_unit_test_teardown(test_tls_len32, teardown),
        cmocka_unit_test_teardown(test_tls_chain, teardown),
        cmocka_unit_test_teardown(test_tls_ipv6, teardown),
        cmocka_unit_test_teardown(test_tls_garbage, teardown),
        cmocka_unit_test_teardown(test_tls_handshake_timeout, teardown),
        cmocka_unit_test_teardown(test_tls_max_handshakes, teardown),
        cmocka_unit_test_teardown(test_tls_client_certs, teardown),
        cmocka_unit_test_teardown(test_tls_auth_inside, teardown),
        cmocka_unit_test_teardown(test_tls_sighup_reload, teardown),
        cmocka_unit_test_teardown(test_tls_sighup_client_ca, teardown),
        cmocka_unit_test_teardown(test_tls_startup_refusals, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
