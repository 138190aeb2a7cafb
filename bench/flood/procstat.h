/* What /proc and getrusage say about CPU time, memory and descriptors: flood's own, the server's
 * (--server-pid), the kernel's softirq threads' and every other process's. Reads only; one
 * struct procstat per flood process holds what is found once (the softirq threads). */
#ifndef FLOOD_PROCSTAT_H
#define FLOOD_PROCSTAT_H

#include <stdint.h>

#define PROCSTAT_MAX_SOFTIRQD 64

struct procstat {
    long server_pid; /* 0: none */
    /* The kernel's ksoftirqd threads: network work deferred to them is nobody's process time,
     * so it is reported on its own (and left out of the others'). */
    long softirqd[PROCSTAT_MAX_SOFTIRQD];
    int nsoftirqd;
};

/* CPU times at one moment, in seconds. */
struct cpu_snap {
    uint64_t wall_ns;  /* CLOCK_MONOTONIC */
    double self_s;     /* flood's user + system time */
    double server_s;   /* the server's utime + stime (all threads); < 0: unknown */
    double softirqd_s; /* the softirq threads' */
};

/** Sets up @ps for @server_pid (0: none) and finds the softirq threads. */
void procstat_init(struct procstat *ps, long server_pid);

/** Fills @s, stamped @now. */
void procstat_cpu(const struct procstat *ps, struct cpu_snap *s, uint64_t now);

/** CPU seconds of every process but flood, the server and the softirq threads, children that
 * came and went included (their parents' cutime + cstime); -1 when /proc cannot be read. Scans
 * all of /proc: slow, call it outside the measured window. */
double procstat_others_cpu_s(const struct procstat *ps);

/** The server's VmRSS in KiB and its open descriptors; -1 without a server or when unknown. */
long procstat_server_rss_kb(const struct procstat *ps);
long procstat_server_fds(const struct procstat *ps);

#endif
