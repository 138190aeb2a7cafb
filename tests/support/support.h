/*
 * Test support shared by every suite that runs programs (integration, ops, flood, hostile):
 * time and bounded waits, starting and stopping processes, free ports, what /proc says about a
 * process, and reading numbers out of JSON. The relay-specific layer (a ringcast server with its
 * log, clients, frames) is harness.h, built on this.
 *
 * Nothing here sleeps to make a test pass: every wait is on a condition with a deadline.
 */
#ifndef RINGCAST_TEST_SUPPORT_H
#define RINGCAST_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- time ---- */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t sp_now_ms(void);
/* Milliseconds left until deadline (sp_now_ms() based), 0 once it passed. */
int sp_remaining_ms(int64_t deadline);
/* A short pause inside a bounded polling loop (never what makes a test pass). */
void sp_nap_ms(int ms);

/* ---- processes ---- */

/*
 * Forks and execs argv (argv[0] a path) with envp (NULL: this process's environment): stdin from
 * /dev/null, stdout to out_fd and stderr to err_fd (-1: /dev/null), no other descriptor
 * inherited, SIGPIPE at its default, killed when the test process dies. Returns the pid; exits
 * the test program when it cannot fork.
 */
pid_t sp_spawn(const char *const *argv, const char *const *envp, int out_fd, int err_fd);

/* A waitpid status as an exit code: the code, 128 + signal when killed by one, else -1. */
int sp_exit_code(int status);

/* Waits up to timeout_ms for pid to end. Returns its exit code (sp_exit_code), -2 on timeout,
 * -1 when it cannot be waited for. */
int sp_wait(pid_t pid, int timeout_ms);

/* SIGTERM, up to 10 s, then SIGKILL. Returns the exit code, or -1. */
int sp_stop(pid_t pid);

/* Runs argv to completion. Returns its exit code, or -1 when it did not end within timeout_ms
 * (it is then killed). *out / *err (may be NULL) get malloc'ed NUL-terminated copies of its
 * stdout / stderr. */
int sp_run(const char *const *argv, int timeout_ms, char **out, char **err);

/* A whole file, malloc'ed and NUL-terminated; NULL when it cannot be read. */
char *sp_slurp(const char *path);

/* Creates an empty file $TMPDIR/ringcast-test-WHAT-XXXXXX (path gets its name) and returns its
 * descriptor (close-on-exec); exits the test program when it cannot. */
int sp_tmp_file(char *path, size_t cap, const char *what);

/* ---- ports ---- */

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int sp_free_port(void);

/* Waits until 127.0.0.1:port accepts a connection, or pid (when > 0) exits. True when it does. */
bool sp_wait_listening(int port, pid_t pid, int timeout_ms);

/* ---- /proc/PID ---- */

struct sp_fds {
    int count;       /* open descriptors */
    int highest;     /* the highest open, -1 when none */
    int lowest_free; /* the lowest not open */
};

/* The descriptors pid has open. False when /proc/PID/fd cannot be read. */
bool sp_proc_fds(pid_t pid, struct sp_fds *out);

/* The first number of the /proc/PID/status line starting with field (e.g. "VmRSS:", "Uid:"),
 * or -1. */
long sp_proc_status(pid_t pid, const char *field);

/* User + system CPU time used by pid, in milliseconds, or -1. */
long sp_proc_cpu_ms(pid_t pid);

/* ---- JSON ---- */

/* The number at a dotted path ("lost", "latency_us.p99") of a JSON object: true and *v set when
 * present with a number; false when absent or null. */
bool sp_json_num(const char *json, const char *path, double *v);
/* True when the key at a dotted path is present (whatever its value, null included). */
bool sp_json_has(const char *json, const char *path);

#endif
