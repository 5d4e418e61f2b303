/*
 * userdir.c - make a user's directory under SJWT_FALLBACK_BASE (as root),
 * or ask slurmjwt-userdir to (as the user). See userdir.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "client.h"
#include "userdir.h"

int sjwt_userdir_make(uid_t uid, gid_t gid, char *why, size_t whylen)
{
    char name[24];
    struct stat st;
    int dfd, fd, rc = -1;

    dfd = open(SJWT_FALLBACK_BASE, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        snprintf(why, whylen, "no XDG_RUNTIME_DIR and no %s (%s): install the tmpfiles.d "
                 "entry for /run/slurmjwt", SJWT_FALLBACK_BASE, strerror(errno));
        return -1;
    }
    if (fstat(dfd, &st) < 0 || st.st_uid != 0 || (st.st_mode & 022) != 0) {
        snprintf(why, whylen, "%s is not root's alone; run chown root: %s && chmod 0711 %s",
                 SJWT_FALLBACK_BASE, SJWT_FALLBACK_BASE, SJWT_FALLBACK_BASE);
        goto out;
    }
    snprintf(name, sizeof(name), "%lu", (unsigned long) uid);
    if (mkdirat(dfd, name, 0700) < 0 && errno != EEXIST) {
        snprintf(why, whylen, "cannot create %s/%s: %s", SJWT_FALLBACK_BASE, name,
                 strerror(errno));
        goto out;
    }
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "cannot open %s/%s: %s", SJWT_FALLBACK_BASE, name,
                 strerror(errno));
        goto out;
    }
    /* Root's means made just now (or by an earlier login that crashed). The
     * mode first: once the user owns it, changing it needs CAP_FOWNER, which
     * slurmjwt-userdir does not have. */
    if (fstat(fd, &st) == 0 && st.st_uid == 0
        && (fchmod(fd, 0700) < 0 || fchown(fd, uid, gid) < 0))
        snprintf(why, whylen, "cannot give %s/%s to the user: %s", SJWT_FALLBACK_BASE, name,
                 strerror(errno));
    else
        rc = 0;
    close(fd);
out:
    close(dfd);
    return rc;
}

int sjwt_userdir_ask(const char *helper_socket, char *why, size_t whylen)
{
    char path[4096], resp[SJWT_RESPONSE_MAX], err[400] = "";
    ssize_t len;
    int missing;

    if (sjwt_beside(path, sizeof(path), helper_socket, SJWT_USERDIR_SOCKET) < 0)
        return -1;
    /* sjwt_ask takes the answer of root (or of ourselves) only. */
    len = sjwt_ask(path, sjwt_now_ms() + SJWT_USERDIR_TIMEOUT_MS, "mkdir\n", 6, resp, err,
                   sizeof(err), &missing);
    if (len < 0) {
        snprintf(why, whylen, "%s", missing == SJWT_ASK_MISSING ? "no slurmjwt-userdir socket"
                                                                : err);
        return -1;
    }
    if (len == 3 && memcmp(resp, "ok\n", 3) == 0)
        return 0;
    snprintf(why, whylen, "slurmjwt-userdir said: %.*s", (int) (len - 1), resp);
    return -1;
}
