/*
 * handoff.c - write the token into the user's cache as the user.
 *
 * Root must never write under /run/user/UID, where the user can plant links,
 * so the module forks: the child makes itself undumpable before anything
 * else (it is a copy of sshd, host keys in memory, about to belong to the
 * user), works out the cache directory and the user's groups, drops groups,
 * gid and uid for good and verifies that, then writes the cache with
 * cache.c, exactly as slurmjwt-refresh would, and exits. For a login that
 * gets no token, the same child (as the user) removes from the fallback
 * cache the files that are not the user's: a uid given to someone else
 * within one boot would keep reading the previous owner's. No program is
 * started: the login pays one fork and a few system calls. Everything that
 * may block (the name service for the groups, a stat of the runtime
 * directory) is the child's, so the parent's deadline bounds it: the parent
 * waits until the deadline at most, then kills the child and waits
 * REAP_GRACE_MS more at most for it to go.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/client.h"
#include "../common/userdir.h"
#include "handoff.h"

#define MAX_GROUPS 65536
#define WHY_MAX 400
#define REAP_GRACE_MS 50
#define EXIT_REMOVED 3      /* the child removed another user's files */

/* What the child works out before it drops root. */
struct plan {
    char dir[SJWT_CACHE_PATH_MAX];
    int fallback;           /* dir is SJWT_FALLBACK_BASE/UID */
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int ngroups;
};

/* The user's groups, as initgroups(3) would set them; -1 when unknown. */
static int user_groups(const struct passwd *pw, struct plan *p)
{
    int n = 0, want = 64;

    /* getgrouplist says how many it needs when the first guess is short. */
    for (p->groups = NULL; want <= MAX_GROUPS; want = n) {
        free(p->groups);
        p->groups = malloc((size_t) want * sizeof(gid_t));
        n = want;
        if (p->groups == NULL)
            return -1;
        if (getgrouplist(pw->pw_name, pw->pw_gid, p->groups, &n) >= 0) {
            p->ngroups = n;
            return 0;
        }
        if (n <= want)
            break;
    }
    free(p->groups);
    p->groups = NULL;
    return -1;
}

/*
 * The child keeps none of its parent's descriptors but `keep`, and has
 * /dev/null for 0, 1 and 2: it must not hold sshd's client connection, its
 * monitor's pipes or a caller's output open while it runs as the user, and
 * a child that hangs (see reap()) must not keep them open after the login.
 */
static void close_all_but(int keep)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC), fd, max;

    if (null < 0)
        _exit(2);
    if (dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
        _exit(2);
    if (null > 2)
        close(null);
#ifdef SYS_close_range
    if ((keep <= 3 || syscall(SYS_close_range, 3U, (unsigned) keep - 1, 0U) == 0)
        && syscall(SYS_close_range, (unsigned) keep + 1, ~0U, 0U) == 0)
        return;
#endif
    max = (int) sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (fd = 3; fd < max; fd++)
        if (fd != keep)
            close(fd);
}

/*
 * Still root, in the child: the cache directory (the fallback made and given
 * to the user when `create`) and the user's groups (not needed, so not
 * looked up, when nothing is created outside the fallback); 0, or -1 with
 * why set.
 */
static int make_plan(const struct passwd *pw, const char *xdg, int create, struct plan *p,
                     char *why, size_t whylen)
{
    p->uid = pw->pw_uid;
    p->gid = pw->pw_gid;
    if (sjwt_cache_dir(p->dir, sizeof(p->dir), pw->pw_uid, NULL, xdg) < 0) {
        snprintf(why, whylen, "cache directory path too long");
        return -1;
    }
    p->fallback = strncmp(p->dir, SJWT_FALLBACK_BASE "/", sizeof(SJWT_FALLBACK_BASE)) == 0;
    if (p->fallback && create && sjwt_userdir_make(pw->pw_uid, pw->pw_gid, why, whylen) < 0)
        return -1;
    if (!create && !p->fallback)
        return 0;
    if (user_groups(pw, p) < 0) {
        snprintf(why, whylen, "cannot list the user's groups");
        return -1;
    }
    return 0;
}

/*
 * Drop root for good: the user's groups, gid and uid; 0, or -1 with why set.
 * Every signal is blocked first and stays blocked: from setuid on the user
 * may signal the child, and until the second prctl the kernel would dump it
 * (fs.suid_dumpable 2: through the core handler), sshd's memory and all.
 * The child only writes and exits; the parent kills it with SIGKILL, which
 * no mask holds.
 */
static int become_user(const struct plan *p, char *why, size_t whylen)
{
    sigset_t all;
    uid_t r, eu, sv;
    gid_t gr, ge, gs;

    if (sigfillset(&all) < 0 || sigprocmask(SIG_BLOCK, &all, NULL) < 0)
        snprintf(why, whylen, "could not block signals: %s", strerror(errno));
    else if (setgroups((size_t) p->ngroups, p->groups) < 0 || setgid(p->gid) < 0
             || setuid(p->uid) < 0)
        snprintf(why, whylen, "could not become the user: %s", strerror(errno));
    else if (getresuid(&r, &eu, &sv) < 0 || r != p->uid || eu != p->uid || sv != p->uid
             || getresgid(&gr, &ge, &gs) < 0 || gr != p->gid || ge != p->gid || gs != p->gid
             || (p->uid != 0 && setuid(0) == 0))
        snprintf(why, whylen, "could not drop root for good");
    /* A change of credentials resets the flag to fs.suid_dumpable: again. */
    else if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        snprintf(why, whylen, "could not make the child undumpable");
    else
        return 0;
    return -1;
}

/*
 * The child: plan, become the user for good, then store e; or, e NULL,
 * remove from the fallback cache the files that are not the user's (an
 * XDG_RUNTIME_DIR cache needs none of that: logind removes the directory
 * when the uid's last session ends). Failures are reported on fd; exit
 * EXIT_REMOVED says files were removed.
 */
static void become_user_and_work(const struct passwd *pw, const char *xdg,
                                 const struct sjwt_entry *e, int fd)
{
    struct plan p = { .groups = NULL };
    char why[WHY_MAX] = "";
    int removed = 0;

    /* First of all: a copy of sshd must never be readable by the user. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        _exit(2);
    close_all_but(fd);
    if (make_plan(pw, xdg, e != NULL, &p, why, sizeof(why)) == 0 && (e != NULL || p.fallback)
        && become_user(&p, why, sizeof(why)) == 0) {
        if (e != NULL)
            (void) sjwt_cache_store(p.dir, p.uid, e, why, sizeof(why));
        else
            removed = sjwt_cache_forget_others(p.dir, p.uid, pw->pw_name, why,
                                               sizeof(why)) > 0;
    }
    if (why[0] != '\0' && write(fd, why, strlen(why)) < 0)
        _exit(1);
    _exit(why[0] != '\0' ? 1 : removed ? EXIT_REMOVED : 0);
}

/*
 * Read the child's report into why until end of file or the deadline; set
 * *eof when the child closed its end; return the bytes kept (a report longer
 * than why is cut short, and the rest read and dropped).
 */
static size_t read_report(int fd, long long deadline, char *why, size_t whylen, int *eof)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    char spill[128];
    size_t got = 0;
    ssize_t n;
    int ready, left;

    *eof = 0;
    for (;;) {
        left = sjwt_poll_ms(deadline);
        ready = left > 0 ? poll(&pfd, 1, left) : 0;
        if ((ready < 0 && errno == EINTR) || (ready == 0 && left > 0))
            continue;
        if (ready <= 0)
            break;
        if (got < whylen - 1)
            n = read(fd, why + got, whylen - 1 - got);
        else
            n = read(fd, spill, sizeof(spill));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *eof = n == 0;
            break;
        }
        if (got < whylen - 1)
            got += (size_t) n;
    }
    why[got] = '\0';
    return got;
}

/*
 * Reap the child if it is gone by `until` (sjwt_now_ms() scale); return 0
 * with its status, or -1 when it is still there. A child killed in the
 * middle of a request to a file system that never answers (a user's FUSE
 * mount in their runtime directory) cannot die until the request ends, so
 * the login never waits for it: it is left to whoever reaps sshd's children.
 */
static int reap(pid_t pid, int *status, long long until)
{
    const struct timespec nap = { 0, 1000 * 1000 };
    pid_t r;

    for (;;) {
        r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno == ECHILD) {
            *status = 0;   /* sshd reaped it for us: the pipe tells anyway */
            return 0;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        if (sjwt_now_ms() >= until)
            return -1;
        nanosleep(&nap, NULL);
    }
}

/* Run the child for e (NULL: forget); -1 with why, or the child's good exit status. */
static int handoff(const struct passwd *pw, const char *xdg, const struct sjwt_entry *e,
                   long long deadline, char *why, size_t whylen)
{
    int fds[2], status = 0, rc = -1, eof = 0;
    size_t got;
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(why, whylen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        become_user_and_work(pw, xdg, e, fds[1]);
    }
    close(fds[1]);
    if (pid < 0) {
        snprintf(why, whylen, "fork: %s", strerror(errno));
        close(fds[0]);
        return -1;
    }
    /* End of file on the pipe: the child is done; bytes before it: why it failed. */
    got = read_report(fds[0], deadline, why, whylen, &eof);
    close(fds[0]);
    if (!eof) {
        kill(pid, SIGKILL);
        if (got == 0)
            snprintf(why, whylen, "writing the cache took longer than the timeout");
    }
    /* The deadline, or REAP_GRACE_MS for a child just killed; never longer. */
    if (reap(pid, &status, (eof ? deadline : sjwt_now_ms()) + REAP_GRACE_MS) < 0) {
        if (why[0] == '\0')
            snprintf(why, whylen, "the child that writes the cache did not exit in time");
        got = strlen(why);
        snprintf(why + got, whylen - got, "; it could not be killed and is left behind");
    } else if (eof && got == 0 && WIFEXITED(status)
               && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == EXIT_REMOVED)) {
        rc = WEXITSTATUS(status);
    } else if (got == 0 && eof) {
        snprintf(why, whylen, "the child that writes the cache failed (status %d)", status);
    }
    return rc;
}

int handoff_store(const struct passwd *pw, const char *xdg, const struct sjwt_entry *e,
                  long long deadline, char *why, size_t whylen)
{
    return handoff(pw, xdg, e, deadline, why, whylen) < 0 ? -1 : 0;
}

int handoff_forget_others(const struct passwd *pw, const char *xdg, long long deadline,
                          char *why, size_t whylen)
{
    int rc = handoff(pw, xdg, NULL, deadline, why, whylen);

    return rc < 0 ? -1 : rc == EXIT_REMOVED;
}
