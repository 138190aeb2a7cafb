/* ringcast: a TCP broadcast relay on io_uring. */
#include <stdio.h>
#include <stdlib.h>

#include "loop.h"
#include "process.h"
#include "ringcast/opts.h"
#include "say.h"
#include "sysd.h"

int main(int argc, char **argv)
{
    /* The configuration: read-only once parsed. */
    static struct opts opts;
    char err[256];
    say_init();
    switch (opts_parse(&opts, argc, argv, getenv("ADDRESS"), getenv("PORT"), err, sizeof(err))) {
    case OPTS_HELP:
        fputs(opts_usage(), stdout);
        return 0;
    case OPTS_VERSION:
        printf("ringcast %s\n", RINGCAST_VERSION);
        return 0;
    case OPTS_ERROR:
        say_error("%s", err);
        return 2;
    case OPTS_RUN:
        break;
    }
    say_set_verbosity(opts.verbosity);
    say_set_timestamps(opts.log_timestamps);

    sigset_t mask;
    process_setup(&mask);
    struct sysd_sockets passed;
    if (sysd_take_sockets(&passed, err, sizeof(err)) < 0) {
        say_error("%s", err);
        return 1;
    }
    struct loop_sockets socks = {.relay = passed.relay, .metrics = passed.metrics};
    union netaddr bound;
    struct loop *loop = loop_create(&opts, &socks, &bound, err, sizeof(err));
    if (!loop) {
        say_error("%s", err);
        return 1;
    }
    char addr[NETADDR_STRLEN], status[NETADDR_STRLEN + 16];
    snprintf(status, sizeof(status), "listening on %s", netaddr_format(&bound, addr, sizeof(addr)));
    sysd_ready(status);
    int status_code = loop_run(loop);
    loop_destroy(loop);
    return status_code;
}
