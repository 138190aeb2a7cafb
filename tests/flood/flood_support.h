/* Helpers for the flood tests: running flood and other programs with bounded waits, starting
 * the servers flood drives (the fault relay, redis-server, nats-server) on loopback ports, and
 * reading numbers out of flood's JSON result. Nothing here sleeps to make a test pass: every wait
 * is on a condition (a process exiting, a port accepting) with a deadline. */
#ifndef FLOOD_SUPPORT_H
#define FLOOD_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define FS_RUN_MS 40000   /* one flood run, at most (they normally take 1-3 s) */
#define FS_START_MS 15000 /* a server starting to accept connections */

/* $FLOOD_BIN, or exits the test program with 1 when unset. */
const char *fs_flood_bin(void);

/* The full path of an executable found in $PATH, /usr/sbin or /usr/bin; NULL when absent. */
const char *fs_which(const char *name, char *buf, size_t cap);

/* Runs argv (argv[0] a path) to completion. Returns its exit code, 128 + signal when killed by
 * one, or -1 when it did not end within timeout_ms (it is then killed). *out / *err (may be
 * NULL) receive malloc'ed NUL-terminated copies of its stdout / stderr. */
int fs_run(const char *const *argv, int timeout_ms, char **out, char **err);

struct fs_flood {
    int code;   /* exit code (see fs_run) */
    char *json; /* the JSON result (--json), NULL when none was written */
    char *out;  /* stdout */
    char *err;  /* stderr */
};

/* Runs "$FLOOD_BIN ARGS... --json TMP" (args NULL-terminated) and collects the result. */
void fs_flood_run(struct fs_flood *r, const char *const *args);
void fs_flood_free(struct fs_flood *r);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int fs_free_port(void);

/* Waits until 127.0.0.1:port accepts a connection, or pid exits. Returns true when it does. */
bool fs_wait_listening(int port, pid_t pid, int timeout_ms);

/* Starts argv in the background (stdin /dev/null, stdout and stderr to log_path, or to a pipe
 * whose read end goes to *out_fd when out_fd is not NULL). Returns the pid. */
pid_t fs_spawn(const char *const *argv, const char *log_path, int *out_fd);

/* SIGTERM, a bounded wait, then SIGKILL. Returns the exit code, 128 + signal, or -1. */
int fs_stop(pid_t pid);

/* The fault relay (tests/flood/fault_relay) with extra options (NULL-terminated); returns its
 * port and sets *pid. */
int fs_start_fault_relay(const char *const *opts, pid_t *pid);

/* Reads a number at a dotted path ("lost", "latency_us.p99") of a JSON object. Returns true and
 * sets *v when the key is present with a number; false when absent or null. */
bool fs_json_num(const char *json, const char *path, double *v);
/* True when the key at a dotted path is present (whatever its value, null included). */
bool fs_json_has(const char *json, const char *path);
/* The number at path, failing the current cmocka test when it is absent or null. */
double fs_json_need(const char *json, const char *path);

/* Number of lines in s (a last line without '\n' counts). */
int fs_count_lines(const char *s);

#endif
