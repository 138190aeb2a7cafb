/* Socket queries kept apart from the loop: <linux/tcp.h> has the whole struct tcp_info, which
 * glibc's <netinet/tcp.h> (used by the loop) truncates, and the two do not mix. */
#include "ringcast/net.h"

#include <errno.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

int net_bytes_acked(int fd, uint64_t *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -errno;
    if (len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
        return -ENOTSUP;
    *out = ti.tcpi_bytes_acked;
    return 0;
}

uint64_t net_unacked(int fd)
{
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0 ? (uint64_t)n : 0;
}
