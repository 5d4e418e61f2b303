/*
 * client.c - talk to slurmjwt-helper within one deadline.
 *
 * Non-blocking socket, poll() with what is left of the deadline, MSG_NOSIGNAL
 * (a helper that hangs up must not SIGPIPE sshd), and the peer check of
 * docs/internals.md ("Helper sockets"): an answer is taken only from uid 0,
 * the caller's own uid, or the owner of the key/ directory root made beside
 * the socket (SlurmUser), never from anyone else who managed to listen there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "protocol.h"

long long sjwt_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sjwt_poll_ms(long long deadline)
{
    long long now = sjwt_now_ms();

    /* Compared before subtracting: no deadline, however far, overflows; and
     * poll() waits at most SJWT_TIMEOUT_MAX_MS at a time, never for ever
     * (a negative int) nor for a truncated time. */
    if (deadline <= now)
        return 0;
    return deadline - now > SJWT_TIMEOUT_MAX_MS ? SJWT_TIMEOUT_MAX_MS : (int) (deadline - now);
}

/* Wait for events on fd until deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    int left, rc;

    for (;;) {
        left = sjwt_poll_ms(deadline);
        if (left == 0)
            return 0;
        rc = poll(&pfd, 1, left);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/*
 * Connect without blocking. A full listen backlog (EAGAIN) during a login
 * burst is worth retrying until the deadline; anything else is final.
 */
static int connect_helper(const char *path, long long deadline, char *why, size_t whylen,
                          int *missing)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, err = 0;
    socklen_t errlen = sizeof(err);

    if (path[0] != '/' || strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(why, whylen, "helper socket \"%s\" is not an absolute path shorter "
                 "than %zu bytes", path, sizeof(sa.sun_path));
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return -1;
    }
    for (;;) {
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0)
            return fd;
        if (errno != EAGAIN || sjwt_now_ms() + 10 >= deadline)
            break;
        poll(NULL, 0, 10);
    }
    if (errno == EINPROGRESS || errno == EINTR) {
        if (wait_fd(fd, POLLOUT, deadline) != 1)
            err = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
            err = errno;
        if (err == 0)
            return fd;
        errno = err;
    }
    *missing = errno == ENOENT ? SJWT_ASK_MISSING : 0;
    snprintf(why, whylen, "cannot connect to helper \"%s\": %s; is slurmjwt-helper "
             "running?", path, errno == EAGAIN ? "listen queue full" : strerror(errno));
    close(fd);
    return -1;
}

int sjwt_beside(char *buf, size_t size, const char *socket_path, const char *name)
{
    const char *slash = strrchr(socket_path, '/');
    int n;

    if (slash == NULL)
        return -1;
    n = snprintf(buf, size, "%.*s/%s", (int) (slash - socket_path), socket_path, name);
    return n < 0 || (size_t) n >= size ? -1 : 0;
}

int sjwt_key_dir(char *buf, size_t size, const char *socket_path)
{
    return sjwt_beside(buf, size, socket_path, "key");
}

/*
 * True when uid owns the key/ directory beside the socket at path and the
 * socket's directory is root's alone: only root can have made key/ there.
 */
static int is_helper_uid(const char *path, uid_t uid)
{
    char dir[sizeof(((struct sockaddr_un *) 0)->sun_path) + 8];
    const char *slash = strrchr(path, '/');
    struct stat parent, keys;
    int n = slash == NULL ? -1 : (int) (slash - path);

    if (n < 0 || snprintf(dir, sizeof(dir), "%.*s", n == 0 ? 1 : n, path) >= (int) sizeof(dir)
        || stat(dir, &parent) < 0 || parent.st_uid != 0 || (parent.st_mode & 022) != 0)
        return 0;
    if (sjwt_key_dir(dir, sizeof(dir), path) < 0 || lstat(dir, &keys) < 0
        || !S_ISDIR(keys.st_mode))
        return 0;
    return keys.st_uid == uid;
}

ssize_t sjwt_ask(const char *path, long long deadline, const char *req, size_t reqlen,
                 char *resp, char *why, size_t whylen, int *status)
{
    struct ucred peer;
    socklen_t peerlen = sizeof(peer);
    size_t got = 0, sent = 0;
    ssize_t n;
    int fd, rc;

    *status = 0;
    fd = connect_helper(path, deadline, why, whylen, status);
    if (fd < 0)
        return -1;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peerlen) < 0
        || (peer.uid != 0 && peer.uid != getuid() && !is_helper_uid(path, peer.uid))) {
        snprintf(why, whylen, "the helper socket %s is served by uid %lu, not root or the "
                 "helper's user; refusing its answer (check the socket path)", path,
                 (unsigned long) peer.uid);
        goto fail;
    }
    while (sent < reqlen) {
        rc = wait_fd(fd, POLLOUT, deadline);
        n = rc == 1 ? send(fd, req + sent, reqlen - sent, MSG_NOSIGNAL) : -1;
        if (n < 0 && rc == 1 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            snprintf(why, whylen, "sending to helper: %s",
                     rc == 0 ? "timed out" : strerror(errno));
            *status = rc == 0 ? SJWT_ASK_SILENT : 0;
            goto fail;
        }
        sent += (size_t) n;
    }
    while (got == 0 || memchr(resp, '\n', got) == NULL) {
        if (got == SJWT_RESPONSE_MAX) {
            snprintf(why, whylen, "helper response has no newline within %d bytes",
                     SJWT_RESPONSE_MAX);
            goto fail;
        }
        rc = wait_fd(fd, POLLIN, deadline);
        n = rc == 1 ? recv(fd, resp + got, SJWT_RESPONSE_MAX - got, 0) : -1;
        if (n < 0 && rc == 1 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            snprintf(why, whylen, "reading from helper: %s after %zu bytes",
                     n == 0 ? "connection closed" : rc == 0 ? "timed out" : strerror(errno),
                     got);
            *status = n < 0 && rc == 0 ? SJWT_ASK_SILENT : 0;
            goto fail;
        }
        got += (size_t) n;
    }
    close(fd);
    return (ssize_t) got;
fail:
    close(fd);
    return -1;
}
