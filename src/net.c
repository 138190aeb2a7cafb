/* Socket queries the loop needs beyond io_uring. */
#include "ringcast/net.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>

uint64_t net_unacked(int fd)
{
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0 ? (uint64_t)n : 0;
}
