/* Helpers for the flood tests: see flood_support.h. */
#include "flood_support.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A short pause inside a bounded polling loop (never what makes a test pass). */
static void nap_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *fs_flood_bin(void)
{
    const char *b = getenv("FLOOD_BIN");
    if (!b || !*b) {
        fprintf(stderr, "flood tests: FLOOD_BIN is not set\n");
        exit(1);
    }
    return b;
}

const char *fs_which(const char *name, char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             path ? path : "");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if (!*d)
            continue;
        snprintf(buf, cap, "%s/%s", d, name);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    for (;;) {
        if (len + 2048 > cap) {
            cap *= 2;
            s = realloc(s, cap);
        }
        size_t n = fread(s + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    s[len] = 0;
    return s;
}

static int make_tmp(char *path, size_t cap, const char *what)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, cap, "%s/flood-test-%s-XXXXXX", dir && *dir ? dir : "/tmp", what);
    int fd = mkstemp(path);
    if (fd < 0) {
        fprintf(stderr, "mkstemp: %s\n", strerror(errno));
        exit(1);
    }
    return fd;
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

/* Waits for pid up to timeout_ms; returns the exit code, or -2 on timeout. */
static int wait_for(pid_t pid, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    int delay = 1;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return exit_code(status);
        if (r < 0 && errno != EINTR)
            return -1;
        if (now_ms() >= deadline)
            return -2;
        nap_ms(delay);
        if (delay < 20)
            delay *= 2;
    }
}

/* In a forked child: stdin from /dev/null, stdout and stderr to @out and @err, then exec. */
static void exec_child(const char *const *argv, int out, int err)
{
    int in = open("/dev/null", O_RDONLY);
    if (in >= 0)
        dup2(in, 0);
    if (out >= 0)
        dup2(out, 1);
    if (err >= 0)
        dup2(err, 2);
    execv(argv[0], (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

pid_t fs_spawn(const char *const *argv, const char *log_path, int *out_fd)
{
    int pfd[2] = {-1, -1};
    if (out_fd && pipe2(pfd, O_CLOEXEC) < 0) {
        fprintf(stderr, "pipe: %s\n", strerror(errno));
        exit(1);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        int out = out_fd ? pfd[1]
                         : open(log_path ? log_path : "/dev/null",
                                O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
        exec_child(argv, out, out);
    }
    if (out_fd) {
        close(pfd[1]);
        *out_fd = pfd[0];
    }
    return pid;
}

int fs_run(const char *const *argv, int timeout_ms, char **out, char **err)
{
    char opath[256], epath[256];
    int ofd = make_tmp(opath, sizeof(opath), "out");
    int efd = make_tmp(epath, sizeof(epath), "err");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0)
        exec_child(argv, ofd, efd);
    close(ofd);
    close(efd);
    int code = wait_for(pid, timeout_ms);
    if (code == -2) {
        fprintf(stderr, "%s did not finish within %d ms: killed\n", argv[0], timeout_ms);
        kill(pid, SIGKILL);
        wait_for(pid, 5000);
        code = -1;
    }
    if (out)
        *out = slurp(opath);
    if (err)
        *err = slurp(epath);
    unlink(opath);
    unlink(epath);
    return code;
}

void fs_flood_run(struct fs_flood *r, const char *const *args)
{
    memset(r, 0, sizeof(*r));
    char jpath[256];
    close(make_tmp(jpath, sizeof(jpath), "json"));
    unlink(jpath); /* flood creates it: absent means it wrote nothing */
    const char *argv[64];
    size_t n = 0;
    argv[n++] = fs_flood_bin();
    fprintf(stderr, "  flood");
    for (size_t i = 0; args[i] && n < 60; i++) {
        argv[n++] = args[i];
        fprintf(stderr, " %s", args[i]);
    }
    fprintf(stderr, "\n");
    argv[n++] = "--json";
    argv[n++] = jpath;
    argv[n] = NULL;
    r->code = fs_run(argv, FS_RUN_MS, &r->out, &r->err);
    r->json = slurp(jpath);
    if (r->json && !*r->json) {
        free(r->json);
        r->json = NULL;
    }
    unlink(jpath);
    if (r->code != 0 || getenv("FLOOD_TEST_VERBOSE")) {
        fprintf(stderr, "  exit %d; flood's stderr:\n%s", r->code, r->err ? r->err : "");
        if (r->json)
            fprintf(stderr, "  JSON: %s\n", r->json);
    }
}

void fs_flood_free(struct fs_flood *r)
{
    free(r->json);
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

int fs_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sin);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
        fprintf(stderr, "fs_free_port: %s\n", strerror(errno));
        exit(1);
    }
    close(fd);
    return ntohs(sin.sin_port);
}

bool fs_wait_listening(int port, pid_t pid, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
        close(fd);
        if (rc == 0)
            return true;
        if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid)
            return false;
        nap_ms(10);
    }
    return false;
}

int fs_stop(pid_t pid)
{
    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    int code = wait_for(pid, 10000);
    if (code == -2) {
        kill(pid, SIGKILL);
        code = wait_for(pid, 5000);
        return code < 0 ? -1 : code;
    }
    return code;
}

static const char *fault_relay_bin(void)
{
    const char *b = getenv("FAULT_RELAY_BIN");
    if (!b || !*b) {
        fprintf(stderr, "flood tests: FAULT_RELAY_BIN is not set\n");
        exit(1);
    }
    return b;
}

int fs_start_fault_relay(const char *const *opts, pid_t *pid)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = fault_relay_bin();
    for (size_t i = 0; opts && opts[i] && n < 30; i++)
        argv[n++] = opts[i];
    argv[n] = NULL;
    int fd;
    *pid = fs_spawn(argv, NULL, &fd);
    /* Its first line names the port. */
    char line[256];
    size_t len = 0;
    int64_t deadline = now_ms() + FS_START_MS;
    while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
        int left = (int)(deadline - now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        ssize_t r = read(fd, line + len, sizeof(line) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    line[len] = 0;
    close(fd);
    int port = 0;
    const char *p = strstr(line, "listening on port ");
    if (p)
        port = atoi(p + strlen("listening on port "));
    if (port <= 0) {
        fprintf(stderr, "fault_relay did not start: \"%s\"\n", line);
        fs_stop(*pid);
        fail();
    }
    return port;
}

/* ---- JSON ---- */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *skip_string(const char *p) /* p at the opening quote */
{
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1])
            p++;
    return *p ? p + 1 : p;
}

static const char *skip_value(const char *p)
{
    p = skip_ws(p);
    if (*p == '"')
        return skip_string(p);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; *p; p++) {
            if (*p == '"') {
                p = skip_string(p) - 1;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
        }
        return p;
    }
    while (*p && *p != ',' && *p != '}' && *p != ']')
        p++;
    return p;
}

/* The value of key in the object at p (p at '{'), or NULL. */
static const char *member(const char *p, const char *key, size_t klen)
{
    p = skip_ws(p);
    if (*p != '{')
        return NULL;
    p++;
    for (;;) {
        p = skip_ws(p);
        if (*p != '"')
            return NULL;
        const char *k = p + 1;
        const char *end = skip_string(p);
        size_t len = (size_t)(end - 1 - k);
        p = skip_ws(end);
        if (*p != ':')
            return NULL;
        p = skip_ws(p + 1);
        if (len == klen && memcmp(k, key, klen) == 0)
            return p;
        p = skip_ws(skip_value(p));
        if (*p != ',')
            return NULL;
        p++;
    }
}

static const char *lookup(const char *json, const char *path)
{
    if (!json)
        return NULL;
    const char *v = json;
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t klen = dot ? (size_t)(dot - path) : strlen(path);
        v = member(v, path, klen);
        path += klen + (dot ? 1 : 0);
    }
    return v;
}

bool fs_json_has(const char *json, const char *path)
{
    return lookup(json, path) != NULL;
}

bool fs_json_num(const char *json, const char *path, double *v)
{
    const char *p = lookup(json, path);
    if (!p || !(*p == '-' || (*p >= '0' && *p <= '9')))
        return false;
    char *end;
    *v = strtod(p, &end);
    return end != p;
}

double fs_json_need(const char *json, const char *path)
{
    double v = 0;
    if (!fs_json_num(json, path, &v)) {
        print_error("JSON: no number at \"%s\" in %s\n", path, json ? json : "(no JSON)");
        fail();
    }
    return v;
}

int fs_count_lines(const char *s)
{
    int n = 0;
    if (!s)
        return 0;
    for (const char *p = s; *p; p++)
        if (*p == '\n')
            n++;
    size_t len = strlen(s);
    if (len && s[len - 1] != '\n')
        n++;
    return n;
}
