/* Process-wide set-up, done once by main before any loop exists. */
#ifndef RINGCAST_PROCESS_H
#define RINGCAST_PROCESS_H

#include <signal.h>

/**
 * Block SIGINT, SIGTERM and SIGHUP (loops read them through a signalfd of @mask), ignore SIGPIPE
 * (sends use MSG_NOSIGNAL, but a stray write must not kill the relay), and raise the soft
 * RLIMIT_NOFILE to the hard one.
 */
void process_setup(sigset_t *mask);

#endif
