/* ringcast: a TCP broadcast relay on io_uring. */
#include <stdio.h>
#include <stdlib.h>

#include "ringcast/loop.h"
#include "ringcast/opts.h"
#include "ringcast/say.h"

int main(int argc, char **argv)
{
    /* The configuration: read-only once parsed. */
    static struct opts opts;
    char err[256];
    switch (opts_parse(&opts, argc, argv, getenv("ADDRESS"), getenv("PORT"), err, sizeof(err))) {
    case OPTS_HELP:
        fputs(opts_usage(), stdout);
        return 0;
    case OPTS_VERSION:
        printf("ringcast %s\n", RINGCAST_VERSION);
        return 0;
    case OPTS_ERROR:
        fprintf(stderr, "ringcast: %s\n", err);
        return 2;
    case OPTS_RUN:
        break;
    }
    say_set_verbosity(opts.verbosity);

    struct loop *loop = loop_create(&opts, err, sizeof(err));
    if (!loop) {
        say_error("%s", err);
        return 1;
    }
    int status = loop_run(loop);
    loop_destroy(loop);
    return status;
}
