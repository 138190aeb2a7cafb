/* Socket queries kept apart from the loop: <linux/tcp.h> has the whole struct tcp_info, which
 * glibc's <netinet/tcp.h> (used by the loop) truncates, and the two do not mix. */
#include "net.h"

#include <errno.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

uint64_t net_outq(int fd)
{
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0 ? (uint64_t)n : 0;
}

uint64_t net_unacked(int fd)
{
    /* A reset connection keeps its sequence numbers, so SIOCOUTQ still counts what it will
     * never send: nothing is outstanding once the connection is closed. */
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == 7 /* TCP_CLOSE */)
        return 0;
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0 ? (uint64_t)n : 0;
}
