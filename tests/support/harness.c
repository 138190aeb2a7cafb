/* Integration test harness: see harness.h. */
#include "harness.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct rc_logbuf {
    char *data;
    size_t len;
    size_t cap;
    bool eof;
};

struct rc_reader {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fds[2];  /* stdout, stderr read ends */
    int wake[2]; /* pipe to stop the thread */
    struct rc_logbuf bufs[2];
    bool started;
};

#define MAX_SERVERS 8
#define MAX_CLIENTS 16384

static struct rc_server *servers[MAX_SERVERS];
static int tracked[MAX_CLIENTS];
static size_t ntracked;

/* ------------------------------------------------------------------ time */

int64_t rc_now_ms(void)
{
    return sp_now_ms();
}

/* ------------------------------------------------------------------ reader thread */

static void logbuf_append(struct rc_logbuf *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            abort();
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void *reader_main(void *arg)
{
    struct rc_reader *r = arg;
    char buf[65536];
    bool open[2] = {true, true};

    while (open[0] || open[1]) {
        struct pollfd pfd[3] = {
            {.fd = open[0] ? r->fds[0] : -1, .events = POLLIN},
            {.fd = open[1] ? r->fds[1] : -1, .events = POLLIN},
            {.fd = r->wake[0], .events = POLLIN},
        };
        int n = poll(pfd, 3, 1000);
        if (n < 0 && errno != EINTR)
            break;
        if (pfd[2].revents)
            break;
        for (int i = 0; i < 2; i++) {
            if (!open[i] || !pfd[i].revents)
                continue;
            ssize_t got = read(r->fds[i], buf, sizeof(buf));
            if (got < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            pthread_mutex_lock(&r->mu);
            if (got > 0) {
                logbuf_append(&r->bufs[i], buf, (size_t)got);
            } else {
                open[i] = false;
                r->bufs[i].eof = true;
            }
            pthread_cond_broadcast(&r->cv);
            pthread_mutex_unlock(&r->mu);
        }
    }
    pthread_mutex_lock(&r->mu);
    r->bufs[0].eof = true;
    r->bufs[1].eof = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void reader_stop(struct rc_reader *r)
{
    if (!r)
        return;
    if (r->started) {
        ssize_t w = write(r->wake[1], "x", 1);
        (void)w;
        pthread_join(r->thread, NULL);
    }
    for (int i = 0; i < 2; i++) {
        close(r->fds[i]);
        close(r->wake[i]);
        free(r->bufs[i].data);
    }
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Waits until the reader saw EOF on both pipes (process exited and output drained). */
static void reader_wait_eof(struct rc_reader *r, int timeout_ms)
{
    int64_t deadline = rc_now_ms() + timeout_ms;
    pthread_mutex_lock(&r->mu);
    while (!(r->bufs[0].eof && r->bufs[1].eof) && sp_remaining_ms(deadline) > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
}

/* ------------------------------------------------------------------ spawning */

static const char *server_bin(void)
{
    const char *bin = getenv("RINGCAST_BIN");
    return (bin && *bin) ? bin : NULL;
}

static bool env_name_is(const char *entry, const char *name)
{
    size_t n = strlen(name);
    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

static bool env_overridden(const char *entry, const char *const *extra)
{
    /* JOURNAL_STREAM too: the server's output is the harness's pipes, never an inherited stream. */
    if (env_name_is(entry, "ADDRESS") || env_name_is(entry, "PORT") ||
        env_name_is(entry, "JOURNAL_STREAM"))
        return true;
    for (size_t i = 0; extra && extra[i]; i++) {
        const char *eq = strchr(extra[i], '=');
        size_t n = eq ? (size_t)(eq - extra[i]) : strlen(extra[i]);
        if (strncmp(entry, extra[i], n) == 0 && entry[n] == '=')
            return true;
    }
    return false;
}

/* Forks and execs the server; fills pid and the read ends of its stdout/stderr pipes. */
static int spawn(const struct rc_opts *opts, pid_t *pid, int fds[2])
{
    const char *bin = server_bin();
    if (!bin) {
        fprintf(stderr, "harness: RINGCAST_BIN is not set\n");
        return -1;
    }
    size_t nargs = 0, nenv = 0, nextra = 0;
    while (opts && opts->argv && opts->argv[nargs])
        nargs++;
    while (environ[nenv])
        nenv++;
    while (opts && opts->env && opts->env[nextra])
        nextra++;

    const char **argv = calloc(nargs + 4, sizeof(*argv));
    const char **envp = calloc(nenv + nextra + 2, sizeof(*envp));
    if (!argv || !envp)
        abort();
    size_t a = 0;
    argv[a++] = bin;
    if (!(opts && opts->no_port)) {
        argv[a++] = "--port";
        argv[a++] = "0";
    }
    for (size_t i = 0; i < nargs; i++)
        argv[a++] = opts->argv[i];
    argv[a] = NULL;
    size_t e = 0;
    for (size_t i = 0; i < nenv; i++)
        if (!env_overridden(environ[i], opts ? opts->env : NULL))
            envp[e++] = environ[i];
    for (size_t i = 0; i < nextra; i++)
        envp[e++] = opts->env[i];

    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
        abort();
    /* Both ends of a pipe share its inode: the child sees this one as its stdout or stderr. */
    char journal[64];
    struct stat st;
    if (opts && opts->journal_fd) {
        if (fstat(opts->journal_fd == 2 ? err[1] : out[1], &st) < 0)
            abort();
        snprintf(journal, sizeof(journal), "JOURNAL_STREAM=%llu:%llu",
                 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
        envp[e++] = journal;
    }
    envp[e] = NULL;
    pid_t child = sp_spawn(argv, envp, out[1], err[1]);
    close(out[1]);
    close(err[1]);
    free(argv);
    free(envp);
    *pid = child;
    fds[0] = out[0];
    fds[1] = err[0];
    return 0;
}

static struct rc_reader *reader_start(int fds[2])
{
    struct rc_reader *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    r->fds[0] = fds[0];
    r->fds[1] = fds[1];
    if (pipe2(r->wake, O_CLOEXEC) < 0)
        abort();
    if (pthread_create(&r->thread, NULL, reader_main, r) != 0)
        abort();
    r->started = true;
    return r;
}

static bool reap(struct rc_server *s, bool block)
{
    if (s->exited)
        return true;
    int st;
    pid_t p = waitpid(s->pid, &st, block ? 0 : WNOHANG);
    if (p == s->pid) {
        s->exited = true;
        s->status = st;
        return true;
    }
    return false;
}

static int wait_pid(struct rc_server *s, int timeout_ms)
{
    int64_t deadline = rc_now_ms() + timeout_ms;
    for (;;) {
        if (reap(s, false))
            return s->status;
        if (sp_remaining_ms(deadline) == 0)
            return -1;
        sp_nap_ms(2);
    }
}

static void server_free(struct rc_server *s)
{
    if (!s)
        return;
    if (!s->exited) {
        kill(s->pid, SIGKILL);
        reap(s, true);
    }
    reader_stop(s->reader);
    free(s);
}

static void register_server(struct rc_server *s)
{
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (!servers[i]) {
            servers[i] = s;
            return;
        }
    }
    server_free(s);
    fail_msg("harness: too many servers in one test");
}

/* ------------------------------------------------------------------ log scanning (mu held) */

static size_t line_start_mark(const struct rc_logbuf *b)
{
    size_t i = b->len;
    while (i > 0 && b->data[i - 1] != '\n')
        i--;
    return i;
}

/* Counts complete lines from mark containing needle; copies the first into first/cap. */
static size_t scan_lines(const struct rc_logbuf *b, size_t mark, const char *needle, size_t stop_at,
                         char *first, size_t cap)
{
    size_t count = 0, nlen = strlen(needle);
    size_t pos = mark;
    while (pos < b->len) {
        const char *line = b->data + pos;
        const char *nl = memchr(line, '\n', b->len - pos);
        if (!nl)
            break;
        size_t llen = (size_t)(nl - line);
        if (memmem(line, llen, needle, nlen)) {
            if (count == 0 && first && cap) {
                size_t c = llen < cap - 1 ? llen : cap - 1;
                memcpy(first, line, c);
                first[c] = '\0';
            }
            if (++count >= stop_at)
                break;
        }
        pos += llen + 1;
    }
    return count;
}

static size_t log_wait_count(struct rc_server *s, size_t mark, const char *needle, size_t count,
                             int timeout_ms, char *first, size_t cap)
{
    struct rc_reader *r = s->reader;
    int64_t deadline = rc_now_ms() + timeout_ms;
    size_t got;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        got = scan_lines(&r->bufs[0], mark, needle, count, first, cap);
        if (got >= count || r->bufs[0].eof || sp_remaining_ms(deadline) == 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int wait = sp_remaining_ms(deadline);
        if (wait > 100)
            wait = 100;
        ts.tv_nsec += (long)wait * 1000000L;
        while (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return got;
}

size_t rc_log_mark(struct rc_server *s)
{
    pthread_mutex_lock(&s->reader->mu);
    size_t m = line_start_mark(&s->reader->bufs[0]);
    pthread_mutex_unlock(&s->reader->mu);
    return m;
}

void rc_dump(struct rc_server *s)
{
    static const char *names[2] = {"stdout", "stderr"};
    pthread_mutex_lock(&s->reader->mu);
    for (int i = 0; i < 2; i++) {
        const struct rc_logbuf *b = &s->reader->bufs[i];
        size_t from = 0;
        /* The last 40 lines are enough to see what happened. */
        int lines = 0;
        for (size_t j = b->len; j > 0; j--) {
            if (b->data[j - 1] == '\n' && ++lines > 40) {
                from = j;
                break;
            }
        }
        fprintf(stderr, "---- server %s (pid %d)%s ----\n%.*s%s", names[i], (int)s->pid,
                from ? ", last 40 lines" : "", (int)(b->len - from), b->data ? b->data + from : "",
                (b->len && b->data[b->len - 1] != '\n') ? "\n" : "");
    }
    pthread_mutex_unlock(&s->reader->mu);
}

void rc_dump_sockets(struct rc_server *s)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "ss -tanoi 'sport = :%d' 1>&2 2>/dev/null", s->port);
    fprintf(stderr, "---- server sockets (ss) ----\n");
    int rc = system(cmd);
    (void)rc;
}

bool rc_log_wait(struct rc_server *s, size_t mark, const char *needle, int timeout_ms)
{
    if (log_wait_count(s, mark, needle, 1, timeout_ms, NULL, 0) >= 1)
        return true;
    fprintf(stderr, "harness: no server log line containing \"%s\" within %d ms\n", needle,
            timeout_ms);
    rc_dump(s);
    return false;
}

size_t rc_log_wait_count(struct rc_server *s, size_t mark, const char *needle, size_t count,
                         int timeout_ms)
{
    size_t got = log_wait_count(s, mark, needle, count, timeout_ms, NULL, 0);
    if (got < count) {
        fprintf(stderr, "harness: %zu of %zu log lines containing \"%s\" within %d ms\n", got,
                count, needle, timeout_ms);
        rc_dump(s);
    }
    return got;
}

size_t rc_log_count(struct rc_server *s, size_t mark, const char *needle)
{
    pthread_mutex_lock(&s->reader->mu);
    size_t n = scan_lines(&s->reader->bufs[0], mark, needle, SIZE_MAX, NULL, 0);
    pthread_mutex_unlock(&s->reader->mu);
    return n;
}

bool rc_log_find(struct rc_server *s, size_t mark, const char *needle, char *buf, size_t cap)
{
    pthread_mutex_lock(&s->reader->mu);
    size_t n = scan_lines(&s->reader->bufs[0], mark, needle, 1, buf, cap);
    pthread_mutex_unlock(&s->reader->mu);
    return n > 0;
}

size_t rc_err_lines(struct rc_server *s)
{
    pthread_mutex_lock(&s->reader->mu);
    const struct rc_logbuf *b = &s->reader->bufs[1];
    size_t n = 0;
    for (size_t i = 0; i < b->len; i++)
        n += b->data[i] == '\n';
    pthread_mutex_unlock(&s->reader->mu);
    return n;
}

size_t rc_err_wait_lines(struct rc_server *s, size_t count, int timeout_ms)
{
    int64_t deadline = rc_now_ms() + timeout_ms;
    size_t n;
    while ((n = rc_err_lines(s)) < count && sp_remaining_ms(deadline) > 0) {
        pthread_mutex_lock(&s->reader->mu);
        bool eof = s->reader->bufs[1].eof;
        pthread_mutex_unlock(&s->reader->mu);
        if (eof)
            break;
        sp_nap_ms(5);
    }
    return n;
}

bool rc_err_contains(struct rc_server *s, const char *needle)
{
    pthread_mutex_lock(&s->reader->mu);
    const struct rc_logbuf *b = &s->reader->bufs[1];
    bool found = b->data && strstr(b->data, needle) != NULL;
    pthread_mutex_unlock(&s->reader->mu);
    return found;
}

char *rc_err_text(struct rc_server *s)
{
    pthread_mutex_lock(&s->reader->mu);
    const struct rc_logbuf *b = &s->reader->bufs[1];
    char *copy = strndup(b->data ? b->data : "", b->len);
    pthread_mutex_unlock(&s->reader->mu);
    if (!copy)
        fail_msg("harness: out of memory");
    return copy;
}

/* ------------------------------------------------------------------ server lifecycle */

static bool parse_start_line(struct rc_server *s, const char *line)
{
    const char *p = strstr(line, "Server started at: ");
    if (!p)
        return false;
    p += strlen("Server started at: ");
    const char *colon = strrchr(p, ':');
    if (!colon)
        return false;
    size_t hlen = (size_t)(colon - p);
    if (hlen >= 2 && p[0] == '[' && p[hlen - 1] == ']') {
        p++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(s->host))
        return false;
    memcpy(s->host, p, hlen);
    s->host[hlen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (port <= 0 || port > 65535)
        return false;
    s->port = (int)port;
    return true;
}

struct rc_server *rc_try_start(const struct rc_opts *opts, int *status)
{
    struct rc_server *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    int fds[2];
    if (spawn(opts, &s->pid, fds) < 0) {
        free(s);
        fail_msg("harness: cannot start the server");
    }
    s->reader = reader_start(fds);
    s->out = &s->reader->bufs[0];
    s->err = &s->reader->bufs[1];

    char line[256];
    size_t got =
        log_wait_count(s, 0, "Server started at: ", 1, RC_START_TIMEOUT_MS, line, sizeof(line));
    if (got == 1 && parse_start_line(s, line)) {
        register_server(s);
        return s;
    }
    if (got == 1) {
        rc_dump(s);
        server_free(s);
        fail_msg("harness: cannot parse the start line \"%s\"", line);
    }
    /* No start line: it exited (or hangs). */
    int st = wait_pid(s, 3000);
    if (st == -1) {
        rc_dump(s);
        server_free(s);
        fail_msg("harness: the server printed no start line within %d ms", RC_START_TIMEOUT_MS);
    }
    reader_wait_eof(s->reader, 2000);
    if (status)
        *status = st;
    /* Keep it registered so the test can read its output; teardown frees it. */
    s->expect_dead = true;
    register_server(s);
    return NULL;
}

struct rc_server *rc_start_ex(const struct rc_opts *opts)
{
    int st = 0;
    struct rc_server *s = rc_try_start(opts, &st);
    if (!s) {
        for (int i = MAX_SERVERS - 1; i >= 0; i--) {
            if (servers[i]) {
                rc_dump(servers[i]);
                break;
            }
        }
        fail_msg("harness: the server exited before its start line (status 0x%x)", st);
    }
    return s;
}

struct rc_server *rc_start(const char *arg, ...)
{
    const char *argv[64];
    size_t n = 0;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && n < 63; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    struct rc_opts o = {.argv = argv};
    return rc_start_ex(&o);
}

int rc_run(const struct rc_opts *opts, int timeout_ms, char **out, char **err)
{
    pid_t pid;
    int fds[2];
    if (spawn(opts, &pid, fds) < 0)
        fail_msg("harness: cannot start the server");
    struct rc_logbuf bufs[2] = {{0}};
    int64_t deadline = rc_now_ms() + timeout_ms;
    bool open[2] = {true, true};
    char buf[4096];
    while ((open[0] || open[1]) && sp_remaining_ms(deadline) > 0) {
        struct pollfd pfd[2] = {
            {.fd = open[0] ? fds[0] : -1, .events = POLLIN},
            {.fd = open[1] ? fds[1] : -1, .events = POLLIN},
        };
        if (poll(pfd, 2, sp_remaining_ms(deadline)) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (!pfd[i].revents)
                continue;
            ssize_t got = read(fds[i], buf, sizeof(buf));
            if (got > 0)
                logbuf_append(&bufs[i], buf, (size_t)got);
            else if (got == 0 || (errno != EINTR && errno != EAGAIN))
                open[i] = false;
        }
    }
    struct rc_server tmp = {.pid = pid};
    int st = wait_pid(&tmp, sp_remaining_ms(deadline) + 100);
    if (st == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    close(fds[0]);
    close(fds[1]);
    for (int i = 0; i < 2; i++) {
        if (!bufs[i].data)
            logbuf_append(&bufs[i], "", 0);
    }
    if (out)
        *out = bufs[0].data;
    else
        free(bufs[0].data);
    if (err)
        *err = bufs[1].data;
    else
        free(bufs[1].data);
    return st;
}

bool rc_alive(struct rc_server *s)
{
    return !reap(s, false);
}

void rc_signal(struct rc_server *s, int sig)
{
    assert_false(s->exited);
    assert_int_equal(kill(s->pid, sig), 0);
}

int rc_wait_exit(struct rc_server *s, int timeout_ms)
{
    s->expect_dead = true;
    int st = wait_pid(s, timeout_ms);
    if (st != -1)
        reader_wait_eof(s->reader, 2000);
    return st;
}

/* ------------------------------------------------------------------ /proc */

int rc_fd_count(struct rc_server *s)
{
    struct sp_fds f;
    return sp_proc_fds(s->pid, &f) ? f.count : -1;
}

int rc_lowest_free_fd(struct rc_server *s)
{
    struct sp_fds f;
    return sp_proc_fds(s->pid, &f) ? f.lowest_free : -1;
}

int rc_wait_fd_count(struct rc_server *s, int want, int timeout_ms)
{
    int64_t deadline = rc_now_ms() + timeout_ms;
    int n;
    for (;;) {
        n = rc_fd_count(s);
        if (n == want || sp_remaining_ms(deadline) == 0)
            return n;
        sp_nap_ms(20);
    }
}

long rc_rss_kb(struct rc_server *s)
{
    return sp_proc_status(s->pid, "VmRSS:");
}

long rc_cpu_ms(struct rc_server *s)
{
    return sp_proc_cpu_ms(s->pid);
}

/* ------------------------------------------------------------------ set-up and teardown */

int rc_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IONBF, 0);
    if (!server_bin()) {
        fprintf(stderr, "harness: RINGCAST_BIN is not set\n");
        exit(1);
    }
    if (access(server_bin(), X_OK) != 0) {
        fprintf(stderr, "harness: %s is not executable: %s\n", server_bin(), strerror(errno));
        exit(1);
    }
    /* One trial start: a kernel without what ringcast needs makes every test a skip. */
    struct rc_server *s = calloc(1, sizeof(*s));
    int fds[2];
    if (!s || spawn(NULL, &s->pid, fds) < 0)
        exit(1);
    s->reader = reader_start(fds);
    char line[256];
    size_t got =
        log_wait_count(s, 0, "Server started at: ", 1, RC_START_TIMEOUT_MS, line, sizeof(line));
    int rc = 0;
    if (got == 0) {
        int st = wait_pid(s, 2000);
        reader_wait_eof(s->reader, 2000);
        pthread_mutex_lock(&s->reader->mu);
        const char *err = s->reader->bufs[1].data ? s->reader->bufs[1].data : "";
        bool kernel = strstr(err, "kernel") || strstr(err, "Kernel") || strstr(err, "io_uring");
        pthread_mutex_unlock(&s->reader->mu);
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1 && kernel) {
            fprintf(stderr, "harness: the kernel lacks what ringcast needs; skipping\n");
            rc_dump(s);
            rc = 77;
        } else {
            fprintf(stderr, "harness: the server does not start (status 0x%x)\n", st);
            rc_dump(s);
            rc = 1;
        }
    }
    server_free(s);
    if (rc == 1)
        exit(1);
    return rc;
}

static void track(int fd)
{
    if (ntracked >= MAX_CLIENTS)
        fail_msg("harness: too many client sockets");
    tracked[ntracked++] = fd;
}

void rc_untrack(int fd)
{
    for (size_t i = 0; i < ntracked; i++) {
        if (tracked[i] == fd) {
            tracked[i] = tracked[--ntracked];
            return;
        }
    }
}

int rc_teardown(void **state)
{
    (void)state;
    int failed = 0;
    for (size_t i = 0; i < ntracked; i++)
        close(tracked[i]);
    ntracked = 0;
    for (int i = 0; i < MAX_SERVERS; i++) {
        struct rc_server *s = servers[i];
        if (!s)
            continue;
        servers[i] = NULL;
        if (!s->expect_dead) {
            if (s->exited) {
                fprintf(stderr, "teardown: the server died during the test (status 0x%x)\n",
                        s->status);
                rc_dump(s);
                failed = 1;
            } else {
                /* Every test is also a clean-shutdown test (and a leak check under ASan). */
                kill(s->pid, SIGTERM);
                int st = wait_pid(s, 15000);
                if (st == -1) {
                    fprintf(stderr, "teardown: the server did not exit within 15 s of SIGTERM "
                                    "with no clients\n");
                    rc_dump(s);
                    failed = 1;
                } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                    reader_wait_eof(s->reader, 2000);
                    fprintf(stderr,
                            "teardown: the server exited with status 0x%x on SIGTERM "
                            "(want exit 0)\n",
                            st);
                    rc_dump(s);
                    failed = 1;
                }
            }
        }
        server_free(s);
    }
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------ clients */

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int rc_connect_raw(struct rc_server *s, int rcvbuf)
{
    const char *host = s->host;
    if (strcmp(host, "::") == 0)
        host = "::1"; /* "::" listens on everything; talk to it over loopback */
    else if (strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    return rc_connect_addr(s, host, rcvbuf);
}

int rc_connect_addr(struct rc_server *s, const char *host, int rcvbuf)
{
    return rc_connect_opts(s, host, &(struct rc_sockopts){.rcvbuf = rcvbuf});
}

static void set_int_option(int fd, int level, int name, const char *what, int value)
{
    if (value > 0 && setsockopt(fd, level, name, &value, sizeof(value)) < 0)
        fail_msg("harness: setsockopt(%s, %d): %s", what, value, strerror(errno));
}

int rc_connect_opts(struct rc_server *s, const char *host, const struct rc_sockopts *o)
{
    int port = o->port ? o->port : s->port;
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            fail_msg("harness: bad address %s", host);
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            fail_msg("harness: bad address %s", host);
        len = sizeof(*a);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("harness: socket: %s", strerror(errno));
    track(fd);
    set_int_option(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", o->rcvbuf);
    set_int_option(fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", o->sndbuf);
    set_int_option(fd, IPPROTO_TCP, TCP_MAXSEG, "TCP_MAXSEG", o->maxseg);
    set_nodelay(fd);
    if (o->local) {
        struct sockaddr_storage ls;
        memset(&ls, 0, sizeof(ls));
        ls.ss_family = ss.ss_family;
        void *addr = ss.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&ls)->sin6_addr
                                              : (void *)&((struct sockaddr_in *)&ls)->sin_addr;
        if (inet_pton(ss.ss_family, o->local, addr) != 1)
            fail_msg("harness: bad local address %s", o->local);
        if (bind(fd, (struct sockaddr *)&ls, len) < 0)
            fail_msg("harness: bind to %s: %s", o->local, strerror(errno));
    }
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)
        fail_msg("harness: connect to port %d: %s", port, strerror(errno));
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int64_t deadline = rc_now_ms() + RC_IO_MS;
    while (sp_remaining_ms(deadline) > 0) {
        int n = poll(&p, 1, sp_remaining_ms(deadline));
        if (n > 0)
            break;
    }
    int err = 0;
    socklen_t elen = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (!(p.revents & POLLOUT) || err)
        fail_msg("harness: connect to port %d did not complete: %s", port,
                 err ? strerror(err) : "timeout");
    return fd;
}

int rc_port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void rc_needle(char *buf, size_t cap, int port, const char *what)
{
    snprintf(buf, cap, ":%d %s", port, what);
}

void rc_wait_client_log(struct rc_server *s, size_t mark, int port, const char *what)
{
    char needle[128];
    rc_needle(needle, sizeof(needle), port, what);
    if (!rc_log_wait(s, mark, needle, RC_WAIT_MS)) {
        rc_dump_sockets(s);
        fail_msg("no server log line \"...%s\"", needle);
    }
}

int rc_listener_port(struct rc_server *s, const char *flags, char *host, size_t hcap, char *line,
                     size_t lcap)
{
    char needle[128], buf[256];
    snprintf(needle, sizeof(needle), " (%s)", flags);
    /* The extra listeners' lines follow the default one's: bounded like any log wait. */
    if (log_wait_count(s, 0, needle, 1, RC_WAIT_MS, buf, sizeof(buf)) < 1) {
        rc_dump(s);
        fail_msg("harness: no \"Listening at: ... (%s)\" line", flags);
    }
    const char *p = strstr(buf, "Listening at: ");
    const char *end = strstr(buf, needle);
    if (!p || !end || strcmp(end, needle) != 0)
        fail_msg("harness: unexpected listener line \"%s\"", buf);
    p += strlen("Listening at: ");
    const char *colon = end;
    while (colon > p && *colon != ':')
        colon--;
    char *num_end;
    long port = strtol(colon + 1, &num_end, 10);
    if (colon == p || num_end != end || port <= 0 || port > 65535)
        fail_msg("harness: cannot read the port of \"%s\"", buf);
    if (host) {
        size_t hlen = (size_t)(colon - p);
        if (hlen >= 2 && p[0] == '[' && p[hlen - 1] == ']') {
            p++;
            hlen -= 2;
        }
        if (hlen >= hcap)
            fail_msg("harness: address too long in \"%s\"", buf);
        memcpy(host, p, hlen);
        host[hlen] = '\0';
    }
    if (line)
        snprintf(line, lcap, "%s", buf);
    return (int)port;
}

int rc_connect_to(struct rc_server *s, const char *host, int port)
{
    size_t mark = rc_log_mark(s);
    int fd = rc_connect_opts(s, host, &(struct rc_sockopts){.port = port});
    rc_wait_client_log(s, mark, rc_port_of(fd), "connected.");
    return fd;
}

int rc_connect_buf(struct rc_server *s, int rcvbuf)
{
    size_t mark = rc_log_mark(s);
    int fd = rc_connect_raw(s, rcvbuf);
    rc_wait_client_log(s, mark, rc_port_of(fd), "connected.");
    return fd;
}

int rc_connect(struct rc_server *s)
{
    return rc_connect_buf(s, 0);
}

void rc_connect_many(struct rc_server *s, int *fds, int n)
{
    size_t mark = rc_log_mark(s);
    for (int i = 0; i < n; i++)
        fds[i] = rc_connect_raw(s, 0);
    size_t got = rc_log_wait_count(s, mark, " connected.", (size_t)n, RC_WAIT_MS * 2);
    if (got < (size_t)n)
        fail_msg("only %zu of %d clients registered", got, n);
    char needle[64];
    for (int i = 0; i < n; i++) {
        rc_needle(needle, sizeof(needle), rc_port_of(fds[i]), "connected.");
        if (rc_log_count(s, mark, needle) != 1)
            fail_msg("no single \"%s\" line", needle);
    }
}

int rc_close(int fd)
{
    int port = rc_port_of(fd);
    rc_untrack(fd);
    close(fd);
    return port;
}

int rc_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    return rc_close(fd);
}

/* ------------------------------------------------------------------ client I/O */

size_t rc_send_some(int fd, const void *buf, size_t len)
{
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        fail_msg("send on fd %d: %s", fd, strerror(errno));
    }
    return (size_t)n;
}

size_t rc_send_lenient(int fd, const void *buf, size_t len, int timeout_ms)
{
    const char *p = buf;
    size_t done = 0;
    int64_t deadline = rc_now_ms() + timeout_ms;
    while (done < len) {
        ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break;
        if (sp_remaining_ms(deadline) == 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        poll(&pfd, 1, sp_remaining_ms(deadline));
    }
    return done;
}

void rc_send(int fd, const void *buf, size_t len)
{
    size_t done = rc_send_lenient(fd, buf, len, RC_IO_MS);
    if (done < len)
        fail_msg("send on fd %d: %zu of %zu bytes within %d ms (%s)", fd, done, len, RC_IO_MS,
                 strerror(errno));
}

void rc_send_str(int fd, const char *str)
{
    rc_send(fd, str, strlen(str));
}

size_t rc_recv_exact(int fd, void *buf, size_t len, int timeout_ms, const char **why)
{
    char *p = buf;
    size_t done = 0;
    int64_t deadline = rc_now_ms() + timeout_ms;
    const char *reason = NULL;
    while (done < len) {
        ssize_t n = recv(fd, p + done, len - done, MSG_DONTWAIT);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0) {
            reason = "eof";
            break;
        }
        if (errno == ECONNRESET) {
            reason = "reset";
            break;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            reason = "error";
            break;
        }
        if (sp_remaining_ms(deadline) == 0) {
            reason = "timeout";
            break;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, sp_remaining_ms(deadline));
    }
    if (why)
        *why = reason ? reason : "ok";
    return done;
}

static void show_bytes(const char *label, const unsigned char *p, size_t len)
{
    fprintf(stderr, "%s (%zu bytes): \"", label, len);
    for (size_t i = 0; i < len && i < 96; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
            fputc(p[i], stderr);
        else
            fprintf(stderr, "\\x%02x", p[i]);
    }
    fprintf(stderr, "%s\"\n", len > 96 ? "..." : "");
}

void rc_expect(int fd, const void *want, size_t len)
{
    unsigned char *got = malloc(len ? len : 1);
    if (!got)
        abort();
    const char *why;
    size_t n = rc_recv_exact(fd, got, len, RC_IO_MS, &why);
    if (n == len && memcmp(got, want, len) == 0) {
        free(got);
        return;
    }
    size_t at = 0;
    while (at < n && got[at] == ((const unsigned char *)want)[at])
        at++;
    size_t from = at > 16 ? at - 16 : 0;
    fprintf(stderr,
            "expected %zu bytes on fd %d (port %d), got %zu (%s); first difference at %zu\n", len,
            fd, rc_port_of(fd), n, why, at);
    show_bytes("  want from there", (const unsigned char *)want + from, len - from);
    show_bytes("  got  from there", got + from, n - from);
    free(got);
    fail_msg("received data differs from what was expected");
}

void rc_expect_str(int fd, const char *want)
{
    rc_expect(fd, want, strlen(want));
}

size_t rc_recv_until_eof(int fd, void *buf, size_t cap, int timeout_ms)
{
    char scratch[65536];
    size_t total = 0;
    int64_t deadline = rc_now_ms() + timeout_ms;
    for (;;) {
        char *dst = scratch;
        size_t room = sizeof(scratch);
        if (buf && total < cap) {
            dst = (char *)buf + total;
            room = cap - total;
        }
        ssize_t n = recv(fd, dst, room, MSG_DONTWAIT);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (n == 0 || errno == ECONNRESET || errno == EPIPE)
            return total;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return total;
        if (sp_remaining_ms(deadline) == 0)
            return (size_t)-1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, sp_remaining_ms(deadline));
    }
}

void rc_expect_closed(int fd)
{
    unsigned char buf[256];
    size_t n = rc_recv_until_eof(fd, buf, sizeof(buf), RC_IO_MS);
    if (n == (size_t)-1)
        fail_msg("fd %d (port %d): the server did not close it within %d ms", fd, rc_port_of(fd),
                 RC_IO_MS);
    if (n != 0) {
        show_bytes("unexpected data before the close", buf, n < sizeof(buf) ? n : sizeof(buf));
        fail_msg("fd %d: %zu unexpected bytes before the close", fd, n);
    }
}

bool rc_quiet(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, ms) == 0;
}

ssize_t rc_recv_now(int fd, void *buf, size_t cap)
{
    ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
    if (n > 0)
        return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    return -1;
}

bool rc_transfer(struct rc_flow *flows, size_t n, int timeout_ms)
{
    struct pollfd *pfd = calloc(n, sizeof(*pfd));
    if (!pfd)
        abort();
    int64_t deadline = rc_now_ms() + timeout_ms;
    bool done = false;
    for (int round = 0; round < 10000000; round++) {
        size_t busy = 0;
        for (size_t i = 0; i < n; i++) {
            struct rc_flow *f = &flows[i];
            pfd[i].fd = f->fd;
            pfd[i].events = 0;
            pfd[i].revents = 0;
            if (f->closed)
                continue;
            if (f->out_done < f->out_len)
                pfd[i].events |= POLLOUT;
            if (f->in_done < f->in_len)
                pfd[i].events |= POLLIN;
            if (pfd[i].events)
                busy++;
        }
        if (busy == 0) {
            done = true;
            for (size_t i = 0; i < n; i++)
                if (flows[i].closed)
                    done = false;
            break;
        }
        if (sp_remaining_ms(deadline) == 0)
            break;
        if (poll(pfd, n, sp_remaining_ms(deadline)) <= 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            struct rc_flow *f = &flows[i];
            if (!pfd[i].revents)
                continue;
            if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) && f->in_done < f->in_len) {
                ssize_t got = recv(f->fd, f->in + f->in_done, f->in_len - f->in_done, MSG_DONTWAIT);
                if (got > 0)
                    f->in_done += (size_t)got;
                else if (got == 0 || (errno != EAGAIN && errno != EINTR))
                    f->closed = true;
            }
            if ((pfd[i].revents & POLLOUT) && f->out_done < f->out_len) {
                ssize_t put = send(f->fd, f->out + f->out_done, f->out_len - f->out_done,
                                   MSG_NOSIGNAL | MSG_DONTWAIT);
                if (put > 0)
                    f->out_done += (size_t)put;
                else if (put < 0 && errno != EAGAIN && errno != EINTR)
                    f->closed = true;
            }
        }
    }
    free(pfd);
    if (!done) {
        for (size_t i = 0; i < n; i++) {
            const struct rc_flow *f = &flows[i];
            if (f->closed || f->out_done < f->out_len || f->in_done < f->in_len)
                fprintf(stderr, "transfer: fd %d (port %d) sent %zu/%zu received %zu/%zu%s\n",
                        f->fd, rc_port_of(f->fd), f->out_done, f->out_len, f->in_done, f->in_len,
                        f->closed ? " (closed by peer)" : "");
        }
    }
    return done;
}

/* ------------------------------------------------------------------ data and environment */

size_t rc_make_line(char *buf, size_t len, const char *prefix, uint32_t seq)
{
    int head = snprintf(buf, len, "%s%08u ", prefix, seq);
    if (head < 0 || (size_t)head + 1 > len)
        abort();
    for (size_t i = (size_t)head; i + 1 < len; i++)
        buf[i] = (char)('a' + (seq * 7 + i) % 26);
    buf[len - 1] = '\n';
    return len;
}

size_t rc_make_len32(uint8_t *buf, const void *payload, uint32_t n)
{
    buf[0] = (uint8_t)(n >> 24);
    buf[1] = (uint8_t)(n >> 16);
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    if (n)
        memcpy(buf + 4, payload, n);
    return 4 + (size_t)n;
}

bool rc_have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

bool rc_under_asan(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return true;
#else
    return false;
#endif
#else
    return false;
#endif
}

/* ---- /metrics ---- */

char *rc_metrics_get(struct rc_server *s, int mport)
{
    int fd = rc_connect_opts(s, "127.0.0.1", &(struct rc_sockopts){.port = mport});
    rc_send_str(fd, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    size_t cap = 256 * 1024;
    char *buf = calloc(1, cap + 1);
    assert_non_null(buf);
    size_t n = rc_recv_until_eof(fd, buf, cap, RC_IO_MS);
    rc_close(fd);
    if (n == (size_t)-1 || !strstr(buf, "HTTP/1.1 200"))
        fail_msg("GET /metrics failed:\n%s", buf);
    return buf;
}

double rc_metrics_sample(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p;) {
        if (!strncmp(p, name, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

double rc_metrics_sum(const char *text, const char *name)
{
    size_t n = strlen(name);
    double sum = -1;
    for (const char *p = text; p && *p;) {
        if (!strncmp(p, name, n) && (p[n] == ' ' || p[n] == '{')) {
            const char *v = p[n] == '{' ? strchr(p + n, '}') : p + n;
            if (v && (v = strchr(v, ' ')))
                sum = (sum < 0 ? 0 : sum) + strtod(v + 1, NULL);
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return sum;
}

void rc_metrics_wait(struct rc_server *s, int mport, const char *name, double want)
{
    int64_t deadline = rc_now_ms() + RC_WAIT_MS;
    for (;;) {
        char *text = rc_metrics_get(s, mport);
        double v = rc_metrics_sample(text, name);
        if (v == want) {
            free(text);
            return;
        }
        if (rc_now_ms() > deadline) {
            rc_dump(s);
            fail_msg("%s is %g, want %g:\n%s", name, v, want, text);
        }
        free(text);
        sp_nap_ms(20);
    }
}
