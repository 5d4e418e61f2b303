/*
 * handoff.c - get the token into the user's cache with the user's identity.
 *
 * Root must never write under /run/user/UID or $HOME, where the user can
 * plant links, so the module does not write the cache itself: it starts
 * slurmjwt-refresh --store-stdin as the user (groups, gid, uid dropped for
 * good and verified), with the helper's OK line on stdin (never on argv, which
 * every local user can read), a minimal clean environment, /dev/null for
 * output and no other descriptor. A double fork keeps sshd free of zombies;
 * the login waits only until the program has exec'd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <security/pam_appl.h>

#include "pam_slurmjwt.h"

#define MAX_GROUPS 65536
#define HANDOFF_NICE 10
#define FALLBACK_BASE "/run/slurmjwt/users"   /* docs/internals.md, cache.py */
#define ENV_VALUE_MAX (PATH_MAX + 32)

/* Exit codes of the intermediate child, turned into log lines by the parent. */
enum child_status {
    CHILD_EXECED = 0,
    CHILD_SETGROUPS = 1,
    CHILD_SETGID = 2,
    CHILD_SETUID = 3,
    CHILD_VERIFY = 4,
    CHILD_FORK = 5,
    CHILD_EXEC_ERRNO = 100,     /* 100 + errno of a failed execve */
};

/*
 * Given a path, return 0 when it is an absolute path to a regular file that
 * root owns and only root can change (and so is its directory); otherwise
 * log why with the fix and return -1.
 */
static int check_refresh_program(const struct session *s, const char *path)
{
    char dir[PATH_MAX];
    const char *what = "";
    struct stat st;
    char *slash;

    if (path[0] != '/' || strlen(path) >= sizeof(dir)) {
        say(s, LOG_ERR, "no cache hand-off: refresh= \"%s\" is not an "
            "absolute path", path);
        return -1;
    }
    memcpy(dir, path, strlen(path) + 1);
    slash = strrchr(dir, '/');
    slash[slash == dir ? 1 : 0] = '\0';
    if (stat(path, &st) < 0) {
        say(s, LOG_ERR, "no cache hand-off: cannot stat \"%s\": %s; install "
            "slurmjwt-refresh or set refresh=none", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode))
        what = "it is not a regular file; check";
    else if (st.st_uid != 0)
        what = "it is not owned by root; run chown root";
    else if (st.st_mode & (S_IWGRP | S_IWOTH))
        what = "group or others may write it; run chmod go-w";
    else if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0
             || (st.st_mode & (S_IWGRP | S_IWOTH))) {
        say(s, LOG_ERR, "refusing refresh program \"%s\": its directory is "
            "not root-owned and writable by root only; run chown root \"%s\" "
            "and chmod go-w \"%s\"", path, dir, dir);
        return -1;
    }
    if (*what != '\0') {
        say(s, LOG_ERR, "refusing refresh program \"%s\": %s \"%s\"",
            path, what, path);
        return -1;
    }
    return 0;
}

/* The refresh program's whole world: argv, a minimal clean env, identity. */
struct handoff {
    const char *argv[3];
    const char *envp[6];
    char home[ENV_VALUE_MAX], user[ENV_VALUE_MAX], logname[ENV_VALUE_MAX];
    char xdg[ENV_VALUE_MAX];
    gid_t *groups;
    int ngroups;
    uid_t uid;
    gid_t gid;
};

/* Fill *h before fork, so the child only makes async-signal-safe calls. */
static int prepare_handoff(const struct session *s, const struct passwd *pw,
                           struct handoff *h)
{
    const char *xdg = pam_getenv(s->pamh, "XDG_RUNTIME_DIR");
    int n = 0, want = 64;
    size_t e = 0;

    h->argv[0] = s->opt->refresh;
    h->argv[1] = "--store-stdin";
    h->argv[2] = NULL;
    h->envp[e++] = "PATH=/usr/bin:/bin";
    if (snprintf(h->home, sizeof(h->home), "HOME=%s", pw->pw_dir)
            >= (int) sizeof(h->home)
        || snprintf(h->user, sizeof(h->user), "USER=%s", pw->pw_name)
            >= (int) sizeof(h->user)
        || snprintf(h->logname, sizeof(h->logname), "LOGNAME=%s", pw->pw_name)
            >= (int) sizeof(h->logname)) {
        say(s, LOG_ERR, "no cache hand-off: home or user name too long");
        return -1;
    }
    h->envp[e++] = h->home;
    h->envp[e++] = h->user;
    h->envp[e++] = h->logname;
    /* A value we cannot pass whole is left out; the refresh program copes. */
    if (xdg != NULL && xdg[0] == '/'
        && snprintf(h->xdg, sizeof(h->xdg), "XDG_RUNTIME_DIR=%s", xdg)
            < (int) sizeof(h->xdg))
        h->envp[e++] = h->xdg;
    h->envp[e] = NULL;
    h->uid = pw->pw_uid;
    h->gid = pw->pw_gid;
    /* getgrouplist says how many it needs when the first guess is short. */
    for (h->groups = NULL; want <= MAX_GROUPS; want = n) {
        free(h->groups);
        h->groups = malloc((size_t) want * sizeof(gid_t));
        n = want;
        if (h->groups == NULL)
            break;
        if (getgrouplist(pw->pw_name, pw->pw_gid, h->groups, &n) >= 0) {
            h->ngroups = n;
            return 0;
        }
        if (n <= want)
            break;
    }
    say(s, LOG_ERR, "no cache hand-off: cannot list the user's groups");
    free(h->groups);
    h->groups = NULL;
    return -1;
}

#if defined(SLURMJWT_NO_CLOSEFROM) || (defined(__GLIBC__) && !__GLIBC_PREREQ(2, 34))
/* Older glibc has no closefrom(); close_range() is a syscall since Linux 5.9. */
static void close_from(int low)
{
    long fd, max = sysconf(_SC_OPEN_MAX);

#ifdef SYS_close_range
    if (syscall(SYS_close_range, low, ~0U, 0) == 0)
        return;
#endif
    for (fd = low; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        close((int) fd);
}
#else
#define close_from closefrom
#endif

/*
 * Grandchild: stdin is the pipe, stdout/stderr /dev/null, fd 3 reports a
 * failed execve, nothing else stays open. Async-signal-safe calls only.
 */
static void exec_refresh(const struct handoff *h, int in, int report)
{
    sigset_t none;
    int null, sig, err;

    setsid();                           /* out of sshd's process group */
    /* The login must not wait on the cache: yield the CPU to it (2 cores,
     * a Python start-up) rather than slow the session being set up. */
    (void) setpriority(PRIO_PROCESS, 0, HANDOFF_NICE);  /* best effort */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);           /* sshd ignores some; exec keeps that */
    /* Move both out of the way first, so no dup2 below can clobber them. */
    in = fcntl(in, F_DUPFD_CLOEXEC, 10);
    report = fcntl(report, F_DUPFD_CLOEXEC, 10);
    null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (in < 0 || report < 0 || null < 0 || dup2(in, STDIN_FILENO) < 0
        || dup2(null, STDOUT_FILENO) < 0 || dup2(null, STDERR_FILENO) < 0
        || dup2(report, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
        _exit(127);
    close_from(4);                      /* no sshd descriptor reaches the user */
    execve(h->argv[0], (char *const *) h->argv, (char *const *) h->envp);
    err = errno;
    if (write(3, &err, sizeof(err)) < 0)
        _exit(127);
    _exit(127);
}

/*
 * Intermediate child: become the user for good, start the grandchild, and
 * exit with a child_status as soon as the grandchild has exec'd (or failed),
 * so the parent waits only for this and sshd never keeps a zombie.
 */
static void become_user_and_spawn(const struct handoff *h, int in)
{
    uid_t r, e, sv;
    gid_t gr, ge, gs;
    int report[2], err = 0;
    pid_t pid;

    if (setgroups((size_t) h->ngroups, h->groups) < 0)
        _exit(CHILD_SETGROUPS);
    if (setgid(h->gid) < 0)
        _exit(CHILD_SETGID);
    if (setuid(h->uid) < 0)
        _exit(CHILD_SETUID);
    if (getresuid(&r, &e, &sv) < 0 || r != h->uid || e != h->uid || sv != h->uid
        || getresgid(&gr, &ge, &gs) < 0 || gr != h->gid || ge != h->gid
        || gs != h->gid || (h->uid != 0 && setuid(0) == 0))
        _exit(CHILD_VERIFY);
    /* The grandchild writes execve's errno here; EOF means it exec'd. */
    if (pipe2(report, O_CLOEXEC) < 0)
        _exit(CHILD_FORK);
    pid = fork();
    if (pid < 0)
        _exit(CHILD_FORK);
    if (pid == 0) {
        close(report[0]);
        exec_refresh(h, in, report[1]);
    }
    close(report[1]);
    while (read(report[0], &err, sizeof(err)) < 0 && errno == EINTR)
        ;
    /* execve's errors (ENOENT, EACCES, ENOEXEC, ...) are all below 128. */
    _exit(err == 0 ? CHILD_EXECED : CHILD_EXEC_ERRNO + (err & 0x7f));
}

/*
 * Without XDG_RUNTIME_DIR the cache goes to FALLBACK_BASE/UID. That parent
 * is root's alone (0755), so no user can squat another's entry; root makes
 * the entry here and gives it to the user. Safe as root: every step is
 * relative to a descriptor of a directory only root can change, and nothing
 * follows a link. Failures are logged; the login goes on regardless.
 */
static void make_fallback_dir(const struct session *s, const struct passwd *pw)
{
    char name[24];
    struct stat st;
    int dfd, fd;

    dfd = open(FALLBACK_BASE, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        say(s, LOG_DEBUG, "no %s (%s): the cache needs XDG_RUNTIME_DIR",
            FALLBACK_BASE, strerror(errno));
        return;
    }
    if (fstat(dfd, &st) < 0 || st.st_uid != 0 || (st.st_mode & 022) != 0) {
        say(s, LOG_ERR, "%s is not root's alone; run chown root: %s && chmod 0755 %s",
            FALLBACK_BASE, FALLBACK_BASE, FALLBACK_BASE);
        close(dfd);
        return;
    }
    snprintf(name, sizeof(name), "%lu", (unsigned long) pw->pw_uid);
    if (mkdirat(dfd, name, 0700) < 0 && errno != EEXIST) {
        say(s, LOG_ERR, "cannot create %s/%s: %s", FALLBACK_BASE, name, strerror(errno));
        close(dfd);
        return;
    }
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    /* Root's means made just now (or by an earlier login that crashed). */
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == 0
        && (fchown(fd, pw->pw_uid, pw->pw_gid) < 0 || fchmod(fd, 0700) < 0))
        say(s, LOG_ERR, "cannot give %s/%s to the user: %s", FALLBACK_BASE, name,
            strerror(errno));
    if (fd < 0)
        say(s, LOG_ERR, "cannot open %s/%s: %s", FALLBACK_BASE, name, strerror(errno));
    else
        close(fd);
    close(dfd);
}

/*
 * The line goes into the pipe before the fork: it fits the pipe buffer, so
 * nothing blocks and no SIGPIPE can hit.
 */
void hand_off(const struct session *s, const struct passwd *pw,
              const char *line, size_t len)
{
    struct handoff h = { 0 };
    int fds[2], status = 0;
    pid_t pid, w;

    if (check_refresh_program(s, s->opt->refresh) < 0
        || prepare_handoff(s, pw, &h) < 0)
        return;
    if (pam_getenv(s->pamh, "XDG_RUNTIME_DIR") == NULL)
        make_fallback_dir(s, pw);
    if (pipe2(fds, O_CLOEXEC) < 0) {
        say(s, LOG_ERR, "no cache hand-off: pipe: %s", strerror(errno));
        goto out;
    }
    if (write(fds[1], line, len) != (ssize_t) len) {
        say(s, LOG_ERR, "no cache hand-off: writing the pipe failed");
        close(fds[0]);
        close(fds[1]);
        goto out;
    }
    close(fds[1]);
    pid = fork();
    if (pid == 0)
        become_user_and_spawn(&h, fds[0]);
    close(fds[0]);
    if (pid < 0) {
        say(s, LOG_ERR, "no cache hand-off: fork: %s", strerror(errno));
        goto out;
    }
    while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    /* ECHILD: sshd reaped it for us; the refresh program still runs. */
    if (w < 0 || (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_EXECED))
        say(s, LOG_DEBUG, "started %s --store-stdin", s->opt->refresh);
    else if (WIFEXITED(status) && WEXITSTATUS(status) >= CHILD_EXEC_ERRNO)
        say(s, LOG_ERR, "no cache hand-off: cannot exec \"%s\": %s",
            s->opt->refresh, strerror(WEXITSTATUS(status) - CHILD_EXEC_ERRNO));
    else
        say(s, LOG_ERR, "no cache hand-off: could not become the user "
            "(child status %d)", status);
out:
    free(h.groups);
}
