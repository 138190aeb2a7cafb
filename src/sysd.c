#include "sysd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

int sysd_take_sockets(struct sysd_sockets *out, char *err, size_t errlen)
{
    out->relay = out->metrics = -1;
    char **names = NULL;
    int n = sd_listen_fds_with_names(1, &names);
    if (n <= 0) {
        if (n < 0)
            snprintf(err, errlen, "LISTEN_FDS: %s", strerror(-n));
        return n;
    }
    int ret = n;
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        const char *name = names && names[i] ? names[i] : "unknown";
        if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
            snprintf(err, errlen, "passed descriptor %d (%s) is not a listening stream socket", fd,
                     name);
            ret = -EINVAL;
            break;
        }
        bool unnamed = !strcmp(name, "unknown") || !*name;
        if (!strcmp(name, "relay") || (unnamed && n == 1 && out->relay < 0)) {
            out->relay = fd;
        } else if (!strcmp(name, "metrics")) {
            out->metrics = fd;
        } else {
            snprintf(err, errlen,
                     "passed socket %d is named '%s': expected 'relay' or 'metrics' "
                     "(FileDescriptorName=)",
                     fd, name);
            ret = -EINVAL;
            break;
        }
    }
    for (int i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
    return ret;
}

void sysd_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void sysd_status(const char *status)
{
    sd_notifyf(0, "STATUS=%s", status);
}

void sysd_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}

uint64_t sysd_watchdog_period_ns(void)
{
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec * 1000 : 0;
}

void sysd_watchdog(void)
{
    sd_notify(0, "WATCHDOG=1");
}
