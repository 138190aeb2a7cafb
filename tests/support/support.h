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

/* ---- children with piped standard streams ---- */

/* A program a test talks to through its standard input and output (ringcast-cat, openssl). */
struct sp_child {
    pid_t pid; /* 0 once waited for */
    int in;    /* write end of its standard input; -1 once closed */
    int out;   /* read end of its standard output (non-blocking) */
    int err;   /* read end of its standard error (non-blocking) */
    char errtext[4096];
    size_t errlen;
};

/*
 * Starts argv (argv[0] a path) with its three standard streams piped to @c, as sp_spawn does
 * otherwise (no other descriptor inherited, killed when the test process dies). Its environment
 * is this process's without the entries that start with @drop (e.g. "RINGCAST_AUTH="; NULL:
 * none), plus @extra ("NAME=VALUE" entries; may be NULL). Exits the test program when it cannot.
 */
void sp_child_start(struct sp_child *c, const char *const *argv, const char *drop,
                    const char *const *extra);
/* What has arrived on its standard error so far, NUL-terminated (the first 4 KiB). */
const char *sp_child_err(struct sp_child *c);
/* Writes all of @buf to its standard input within timeout_ms. 0, or -1 with errno set (ETIMEDOUT
 * when it did not read in time). */
int sp_child_write(struct sp_child *c, const void *buf, size_t len, int timeout_ms);
/* Reads exactly @len bytes of its standard output into @got within timeout_ms. Returns the bytes
 * read; when fewer, *why says why ("eof", "timeout" or the error). */
size_t sp_child_read(struct sp_child *c, void *got, size_t len, int timeout_ms, const char **why);
/* Closes its standard input (it sees EOF). */
void sp_child_close_in(struct sp_child *c);
/* Kills it if it still runs, waits for it and closes the pipes. */
void sp_child_reap(struct sp_child *c);

/* The executable @name found in $PATH, written to @buf; NULL when there is none. */
const char *sp_which(const char *name, char *buf, size_t cap);

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
