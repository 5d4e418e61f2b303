/*
 * test_client.c - C unit tests of ../common/client.c's deadline arithmetic:
 * whatever deadline a caller gives (HelperTimeout of days, a value at either
 * end of long long), poll() is never asked to wait for ever or for a
 * truncated time, and nothing overflows (UBSan). poll() is this file's own:
 * it records what it was asked and fails, so that no case waits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/client.h"
#include "check.h"

static int polls, last_timeout;

/* Stands in for libc's: the executable's definition wins. */
int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    (void) fds, (void) nfds;
    polls++;
    last_timeout = timeout;
    errno = EBADF;
    return -1;
}

static char base[] = "/tmp/slurmjwt-test-client-XXXXXX";

/* Ask a helper that never answers with this deadline; the poll timeout asked. */
static int asked(const char *path, long long deadline, int *rc)
{
    char resp[8192], why[256];
    int missing;

    polls = 0;
    last_timeout = -12345;
    *rc = (int) sjwt_ask(path, deadline, "x\n", 2, resp, why, sizeof(why), &missing);
    return polls == 0 ? 0 : last_timeout;
}

int main(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    long long now;
    int fd, t, rc;

    if (mkdtemp(base) == NULL)
        return 2;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/helper.sock", base);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)
        return 2;
    now = sjwt_now_ms();
    t = asked(sa.sun_path, now + 700, &rc);
    check(rc < 0 && t > 0 && t <= 700, "a deadline 700 ms away: poll waits what is left");
    /* 25 days of HelperTimeout: 2160000000 ms, past INT_MAX. */
    t = asked(sa.sun_path, now + 25LL * 86400 * 1000, &rc);
    check(rc < 0 && t > 0 && t <= 60000, "a deadline 25 days away: poll waits 60 s at most, "
          "never for ever");
    t = asked(sa.sun_path, LLONG_MAX, &rc);
    check(rc < 0 && t > 0 && t <= 60000, "the farthest deadline: 60 s at most at a time");
    t = asked(sa.sun_path, LLONG_MIN, &rc);
    check(rc < 0 && polls == 0, "a deadline long past: no wait and no overflow");
    close(fd);
    unlink(sa.sun_path);
    rmdir(base);
    return report();
}
