/* /proc and rusage: see procstat.h. */
#include "procstat.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of a process (all its threads), in seconds; -1 when unknown. */
static double pid_cpu_s(long pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* Fields after the command: state is field 3, utime 14, stime 15. */
    unsigned long long utime = 0, stime = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14)
            utime = strtoull(tok, NULL, 10);
        if (field == 15) {
            stime = strtoull(tok, NULL, 10);
            break;
        }
    }
    if (field != 15)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void find_softirqd(struct procstat *ps)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && ps->nsoftirqd < PROCSTAT_MAX_SOFTIRQD) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64], comm[64] = "";
        snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof(comm), f) && !strncmp(comm, "ksoftirqd/", 10))
            ps->softirqd[ps->nsoftirqd++] = pid;
        fclose(f);
    }
    closedir(d);
}

void procstat_init(struct procstat *ps, long server_pid)
{
    *ps = (struct procstat){.server_pid = server_pid};
    find_softirqd(ps);
}

static double softirqd_cpu_s(const struct procstat *ps)
{
    double total = 0;
    for (int i = 0; i < ps->nsoftirqd; i++) {
        double v = pid_cpu_s(ps->softirqd[i]);
        if (v > 0)
            total += v;
    }
    return total;
}

void procstat_cpu(const struct procstat *ps, struct cpu_snap *s, uint64_t now)
{
    s->wall_ns = now;
    s->self_s = self_cpu_s();
    s->server_s = ps->server_pid ? pid_cpu_s(ps->server_pid) : -1;
    s->softirqd_s = softirqd_cpu_s(ps);
}

long procstat_server_rss_kb(const struct procstat *ps)
{
    if (!ps->server_pid)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", ps->server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

long procstat_server_fds(const struct procstat *ps)
{
    if (!ps->server_pid)
        return -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", ps->server_pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

double procstat_others_cpu_s(const struct procstat *ps)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    double ticks = 0;
    long self = (long)getpid();
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self || pid == ps->server_pid)
            continue;
        bool skip = false;
        for (int i = 0; i < ps->nsoftirqd; i++)
            skip |= ps->softirqd[i] == pid;
        if (skip)
            continue;
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        if (!p)
            continue;
        unsigned long long v[4] = {0};
        /* After the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt
         * cmajflt utime stime cutime cstime */
        if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &v[0],
                   &v[1], &v[2], &v[3]) == 4)
            ticks += (double)(v[0] + v[1] + v[2] + v[3]);
    }
    closedir(d);
    return ticks / (double)sysconf(_SC_CLK_TCK);
}
