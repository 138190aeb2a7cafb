/* Helpers for the flood tests: see flood_support.h. */
#include "flood_support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

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

pid_t fs_spawn(const char *const *argv, const char *log_path, int *out_fd)
{
    int pfd[2] = {-1, -1}, out = -1;
    if (out_fd) {
        if (pipe2(pfd, O_CLOEXEC) < 0) {
            fprintf(stderr, "pipe: %s\n", strerror(errno));
            exit(1);
        }
        out = pfd[1];
    } else if (log_path) {
        out = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    }
    pid_t pid = sp_spawn(argv, NULL, out, out);
    if (out >= 0)
        close(out);
    if (out_fd)
        *out_fd = pfd[0];
    return pid;
}

void fs_flood_run(struct fs_flood *r, const char *const *args)
{
    memset(r, 0, sizeof(*r));
    char jpath[256];
    close(sp_tmp_file(jpath, sizeof(jpath), "json"));
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
    r->code = sp_run(argv, FS_RUN_MS, &r->out, &r->err);
    r->json = sp_slurp(jpath);
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
    int64_t deadline = sp_now_ms() + FS_START_MS;
    while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
        int left = sp_remaining_ms(deadline);
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
        sp_stop(*pid);
        fail();
    }
    return port;
}

/* ---- JSON ---- */

double fs_json_need(const char *json, const char *path)
{
    double v = 0;
    if (!sp_json_num(json, path, &v)) {
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
