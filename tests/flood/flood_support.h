/* Helpers for the flood tests, on top of tests/support (processes, ports, JSON): running flood,
 * starting the servers flood drives (the fault relay, redis-server, nats-server) on loopback ports,
 * and reading numbers out of flood's JSON result. Nothing here sleeps to make a test pass: every
 * wait is on a condition (a process exiting, a port accepting) with a deadline. */
#ifndef FLOOD_SUPPORT_H
#define FLOOD_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "support.h"

#define FS_RUN_MS 40000   /* one flood run, at most (they normally take 1-3 s) */
#define FS_START_MS 15000 /* a server starting to accept connections */

/* $FLOOD_BIN, or exits the test program with 1 when unset. */
const char *fs_flood_bin(void);

/* The full path of an executable found in $PATH, /usr/sbin or /usr/bin; NULL when absent. */
const char *fs_which(const char *name, char *buf, size_t cap);

struct fs_flood {
    int code;   /* exit code (see sp_run) */
    char *json; /* the JSON result (--json), NULL when none was written */
    char *out;  /* stdout */
    char *err;  /* stderr */
};

/* Runs "$FLOOD_BIN ARGS... --json TMP" (args NULL-terminated) and collects the result. */
void fs_flood_run(struct fs_flood *r, const char *const *args);
void fs_flood_free(struct fs_flood *r);

/* Starts argv in the background (stdin /dev/null, stdout and stderr to log_path, or to a pipe
 * whose read end goes to *out_fd when out_fd is not NULL). Returns the pid. */
pid_t fs_spawn(const char *const *argv, const char *log_path, int *out_fd);

/* The fault relay (tests/flood/fault_relay) with extra options (NULL-terminated); returns its
 * port and sets *pid. */
int fs_start_fault_relay(const char *const *opts, pid_t *pid);

/* The number at path, failing the current cmocka test when it is absent or null. */
double fs_json_need(const char *json, const char *path);

/* Number of lines in s (a last line without '\n' counts). */
int fs_count_lines(const char *s);

#endif
