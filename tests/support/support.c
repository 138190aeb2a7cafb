/* Test support: see support.h. */
#include "support.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------ time */

int64_t sp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sp_remaining_ms(int64_t deadline)
{
    int64_t left = deadline - sp_now_ms();
    return left < 0 ? 0 : (int)left;
}

void sp_nap_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ processes */

static void die(const char *what)
{
    fprintf(stderr, "test support: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* fork and execve with stdin, stdout and stderr on @in_fd, @out_fd and @err_fd (-1: /dev/null);
 * nothing else of the test's leaks into the program. The one fork/exec of the test support. */
static pid_t fork_exec(const char *const *argv, const char *const *envp, int in_fd, int out_fd,
                       int err_fd)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid > 0)
        return pid;
    /* The child: only async-signal-safe calls from here on. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int null = open("/dev/null", O_RDWR);
    dup2(in_fd >= 0 ? in_fd : null, 0);
    dup2(out_fd >= 0 ? out_fd : null, 1);
    dup2(err_fd >= 0 ? err_fd : null, 2);
    /* The test's own sockets and pipes must not leak into the program. */
    syscall(SYS_close_range, 3U, ~0U, 0U);
    signal(SIGPIPE, SIG_DFL); /* the harness ignores it; exec keeps that */
    execve(argv[0], (char *const *)argv, envp ? (char *const *)envp : environ);
    static const char msg[] = "test support: execve failed\n";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    (void)w;
    _exit(127);
}

pid_t sp_spawn(const char *const *argv, const char *const *envp, int out_fd, int err_fd)
{
    return fork_exec(argv, envp, -1, out_fd, err_fd);
}

int sp_exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int sp_wait(pid_t pid, int timeout_ms)
{
    int64_t deadline = sp_now_ms() + timeout_ms;
    int delay = 1;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return sp_exit_code(status);
        if (r < 0 && errno != EINTR)
            return -1;
        if (sp_remaining_ms(deadline) == 0)
            return -2;
        sp_nap_ms(delay);
        if (delay < 20)
            delay *= 2;
    }
}

int sp_stop(pid_t pid)
{
    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    int code = sp_wait(pid, 10000);
    if (code == -2) {
        kill(pid, SIGKILL);
        code = sp_wait(pid, 5000);
    }
    return code < 0 ? -1 : code;
}

char *sp_slurp(const char *path)
{
    FILE *f = fopen(path, "rbe");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    while (s) {
        if (len + 2048 > cap) {
            char *grown = realloc(s, cap *= 2);
            if (!grown) {
                free(s);
                s = NULL;
                break;
            }
            s = grown;
        }
        size_t n = fread(s + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    if (s)
        s[len] = 0;
    return s;
}

int sp_tmp_file(char *path, size_t cap, const char *what)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, cap, "%s/ringcast-test-%s-XXXXXX", dir && *dir ? dir : "/tmp", what);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        die("mkstemp");
    return fd;
}

int sp_run(const char *const *argv, int timeout_ms, char **out, char **err)
{
    char opath[256], epath[256];
    int ofd = sp_tmp_file(opath, sizeof(opath), "out");
    int efd = sp_tmp_file(epath, sizeof(epath), "err");
    pid_t pid = sp_spawn(argv, NULL, ofd, efd);
    close(ofd);
    close(efd);
    int code = sp_wait(pid, timeout_ms);
    if (code == -2) {
        fprintf(stderr, "%s did not finish within %d ms: killed\n", argv[0], timeout_ms);
        kill(pid, SIGKILL);
        sp_wait(pid, 5000);
        code = -1;
    }
    if (out)
        *out = sp_slurp(opath);
    if (err)
        *err = sp_slurp(epath);
    unlink(opath);
    unlink(epath);
    return code;
}

/* ------------------------------------------------------------------ ports */

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sin;
}

int sp_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = loopback(0);
    socklen_t sl = sizeof(sin);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &sl) < 0)
        die("free port");
    close(fd);
    return ntohs(sin.sin_port);
}

bool sp_wait_listening(int port, pid_t pid, int timeout_ms)
{
    int64_t deadline = sp_now_ms() + timeout_ms;
    while (sp_remaining_ms(deadline) > 0) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = loopback(port);
        int rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
        close(fd);
        if (rc == 0)
            return true;
        if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid)
            return false;
        sp_nap_ms(10);
    }
    return false;
}

/* ------------------------------------------------------------------ /proc */

bool sp_proc_fds(pid_t pid, struct sp_fds *out)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return false;
    static bool used[65536];
    memset(used, 0, sizeof(used));
    *out = (struct sp_fds){.highest = -1};
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        long fd = strtol(de->d_name, NULL, 10);
        out->count++;
        if (fd > out->highest)
            out->highest = (int)fd;
        if (fd >= 0 && fd < 65536)
            used[fd] = true;
    }
    closedir(d);
    while (out->lowest_free < 65536 && used[out->lowest_free])
        out->lowest_free++;
    return true;
}

long sp_proc_status(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0) {
            v = strtol(line + n, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

long sp_proc_cpu_ms(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* The name in field 2 may hold spaces: count fields from its closing parenthesis. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p += 2; /* field 3, the state */
    for (int field = 3; field < 14 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    unsigned long utime = 0, stime = 0; /* fields 14 and 15 */
    if (!p || sscanf(p, "%lu %lu", &utime, &stime) != 2)
        return -1;
    return (long)((utime + stime) * 1000UL / (unsigned long)sysconf(_SC_CLK_TCK));
}

/* ------------------------------------------------------------------ JSON */

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

bool sp_json_has(const char *json, const char *path)
{
    return lookup(json, path) != NULL;
}

bool sp_json_num(const char *json, const char *path, double *v)
{
    const char *p = lookup(json, path);
    if (!p || !(*p == '-' || (*p >= '0' && *p <= '9')))
        return false;
    char *end;
    *v = strtod(p, &end);
    return end != p;
}

/* ---- children with piped standard streams ---- */

void sp_child_start(struct sp_child *c, const char *const *argv, const char *drop,
                    const char *const *extra)
{
    const char *envp[512];
    size_t ne = 0, dl = drop ? strlen(drop) : 0;
    for (char **e = environ; *e && ne < 500; e++)
        if (!dl || strncmp(*e, drop, dl) != 0)
            envp[ne++] = *e;
    for (size_t i = 0; extra && extra[i] && ne < 510; i++)
        envp[ne++] = extra[i];
    envp[ne] = NULL;
    int pin[2], pout[2], perr[2];
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC))
        die("pipe");
    pid_t pid = fork_exec(argv, envp, pin[0], pout[1], perr[1]);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    *c = (struct sp_child){.pid = pid, .in = pin[1], .out = pout[0], .err = perr[0]};
    fcntl(c->out, F_SETFL, O_NONBLOCK);
    fcntl(c->err, F_SETFL, O_NONBLOCK);
}

const char *sp_child_err(struct sp_child *c)
{
    for (;;) {
        size_t room = sizeof(c->errtext) - 1 - c->errlen;
        ssize_t n = room ? read(c->err, c->errtext + c->errlen, room) : 0;
        if (n <= 0)
            break;
        c->errlen += (size_t)n;
    }
    c->errtext[c->errlen] = '\0';
    return c->errtext;
}

int sp_child_write(struct sp_child *c, const void *buf, size_t len, int timeout_ms)
{
    const char *p = buf;
    int64_t deadline = sp_now_ms() + timeout_ms;
    while (len) {
        ssize_t n = write(c->in, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return -1;
        if (sp_remaining_ms(deadline) == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {.fd = c->in, .events = POLLOUT};
        poll(&pfd, 1, sp_remaining_ms(deadline));
    }
    return 0;
}

size_t sp_child_read(struct sp_child *c, void *got, size_t len, int timeout_ms, const char **why)
{
    size_t done = 0;
    *why = "timeout";
    int64_t deadline = sp_now_ms() + timeout_ms;
    while (done < len) {
        ssize_t n = read(c->out, (char *)got + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0) {
            *why = "eof";
            break;
        }
        if (errno != EAGAIN && errno != EINTR) {
            *why = strerror(errno);
            break;
        }
        if (sp_remaining_ms(deadline) == 0)
            break;
        struct pollfd pfd = {.fd = c->out, .events = POLLIN};
        poll(&pfd, 1, sp_remaining_ms(deadline));
    }
    return done;
}

void sp_child_close_in(struct sp_child *c)
{
    if (c->in >= 0)
        close(c->in);
    c->in = -1;
}

void sp_child_reap(struct sp_child *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        sp_wait(c->pid, 5000);
        c->pid = 0;
    }
    sp_child_close_in(c);
    close(c->out);
    close(c->err);
}

const char *sp_which(const char *name, char *buf, size_t cap)
{
    const char *env = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s", env && *env ? env : "/usr/bin:/bin");
    for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(buf, cap, "%s/%s", d, name);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    if (cap)
        buf[0] = '\0';
    return NULL;
}
