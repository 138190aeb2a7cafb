/* Constants newer than liburing 2.3 (Debian bookworm). Each is probed before use. */
#ifndef RINGCAST_COMPAT_H
#define RINGCAST_COMPAT_H

#include <liburing.h>

/* Linux 6.2 (and 6.1.2): ask SEND_ZC notifications to say whether the kernel copied. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

#endif
