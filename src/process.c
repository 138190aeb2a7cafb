/* Process-wide set-up: the signal mask and the descriptor limit. */
#include "process.h"

#include <sys/resource.h>

void process_setup(sigset_t *mask)
{
    sigemptyset(mask);
    sigaddset(mask, SIGINT);
    sigaddset(mask, SIGTERM);
    /* The default action would kill the relay: an operator's reload must never do that. */
    sigaddset(mask, SIGHUP);
    sigprocmask(SIG_BLOCK, mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}
