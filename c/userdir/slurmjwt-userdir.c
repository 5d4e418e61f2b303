/*
 * slurmjwt-userdir - make the caller's token cache directory under
 * SJWT_FALLBACK_BASE, for a user with no login through pam_slurmjwt.so (a
 * cron job, a service, sudo, a portal's per-user server). systemd runs it as
 * root for each connection to slurmjwt-userdir.socket (Accept=yes), the
 * connection on standard input.
 *
 * It takes nothing from the caller: who is asking comes from the kernel
 * (SO_PEERCRED), and what it reads is thrown away. It makes one directory,
 * for that uid only, and answers one line: "ok", or "error WHY".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/userdir.h"

#define PROG "slurmjwt-userdir"
#define READ_MS 200         /* a stalled client holds its slot no longer than this */

/* Read and drop what the client sent (at most a line; ours send it with the
 * connect): closing a socket with unread data would reset the connection
 * before our answer is read. */
static void drain(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char buf[64];

    if (poll(&p, 1, READ_MS) == 1)
        (void) recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
}

static void answer(int fd, const char *text)
{
    (void) send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
}

int main(int argc, char **argv)
{
    struct ucred peer;
    socklen_t len = sizeof(peer);
    char why[400] = "", line[450];

    (void) argv;
    if (argc != 1 || getsockopt(0, SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0) {
        fprintf(stderr, PROG ": takes no arguments, and its standard input must be a unix "
                "socket: systemd runs it for slurmjwt-userdir.socket\n");
        return 2;
    }
    drain(0);
    if (peer.uid == 0) {
        answer(0, "error root makes its own\n");
        return 0;
    }
    if (sjwt_userdir_make(peer.uid, peer.gid, why, sizeof(why)) < 0) {
        fprintf(stderr, PROG ": uid %lu: %s\n", (unsigned long) peer.uid, why);
        snprintf(line, sizeof(line), "error %s\n", why);
        answer(0, line);
        return 1;
    }
    answer(0, "ok\n");
    return 0;
}
