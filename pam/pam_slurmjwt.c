/*
 * pam_slurmjwt.c - give every login session a Slurm JWT (session stack only).
 *
 * Responsible for: the PAM entry points and their options; asking
 * slurmjwt-helper for a token for the PAM user, bounded in time and size;
 * putting SLURM_JWT into the PAM environment when the helper's export policy
 * says so. Elsewhere: the wire format (protocol.c), the hand-off to
 * slurmjwt-refresh running as the user (handoff.c), minting (the helper).
 *
 * It fails open, always: whatever goes wrong, open_session returns
 * PAM_SUCCESS, without a token, after at most timeout= milliseconds of
 * talking to the helper, with one syslog line saying why. Configure it as
 * "session optional"; never "sufficient", which would skip later modules.
 *
 * Configuration comes only from module arguments and fixed paths, never from
 * the environment, which the user may influence. Arguments:
 *
 *   socket=PATH    helper socket (default /run/slurmjwt/helper.sock)
 *   timeout=MS     milliseconds for connect+send+receive together, 1..60000
 *                  (default 2000); the login waits no longer on the helper
 *   minuid=UID     users below it are skipped without asking (default 1000)
 *   refresh=PATH   slurmjwt-refresh, run as the user with --store-stdin to
 *                  fill the cache (default /usr/bin/slurmjwt-refresh); must
 *                  be root-owned and writable by root only; "none" disables
 *   noexport       never put SLURM_JWT in the PAM environment (the cache
 *                  hand-off still happens)
 *   debug          also log skipped users and policy refusals (LOG_DEBUG)
 *
 * Unknown or malformed arguments are logged once each and ignored.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "protocol.h"
#include "pam_slurmjwt.h"

/* Built with -fvisibility=hidden: only the PAM entry points are exported. */
#define PAM_PUBLIC __attribute__((visibility("default")))

#define DEFAULT_SOCKET "/run/slurmjwt/helper.sock"
#define DEFAULT_REFRESH "/usr/bin/slurmjwt-refresh"

enum opt_type { OPT_FLAG, OPT_NUMBER, OPT_PATH };

/* Every module argument, in one place (like pam-krb5's options table). */
static const struct option_spec {
    const char *name;
    enum opt_type type;
    size_t offset;
    long long min, max;
} OPTIONS[] = {
    { "debug",    OPT_FLAG,   offsetof(struct options, debug),      0, 0 },
    { "noexport", OPT_FLAG,   offsetof(struct options, noexport),   0, 0 },
    { "minuid",   OPT_NUMBER, offsetof(struct options, minuid),     0, 4294967295LL },
    { "timeout",  OPT_NUMBER, offsetof(struct options, timeout_ms), 1, 60000 },
    { "socket",   OPT_PATH,   offsetof(struct options, socket),     0, 0 },
    { "refresh",  OPT_PATH,   offsetof(struct options, refresh),    0, 0 },
};

void say(const struct session *s, int prio, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    va_list ap;

    if (prio == LOG_DEBUG && !s->opt->debug)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    pam_syslog(s->pamh, prio, "%s (user %s)", line, s->user);
}

/* Given argc/argv, fill *opt; bad or unknown arguments are logged and ignored. */
static void parse_options(const struct session *s, struct options *opt,
                          int argc, const char **argv)
{
    int i;
    size_t k, n;

    *opt = (struct options) {
        .minuid = 1000, .timeout_ms = 2000,
        .socket = DEFAULT_SOCKET, .refresh = DEFAULT_REFRESH,
    };
    for (i = 0; i < argc; i++) {
        const struct option_spec *spec = NULL;
        const char *value = NULL;
        char *end;
        long long num;

        for (k = 0; k < sizeof(OPTIONS) / sizeof(OPTIONS[0]); k++) {
            n = strlen(OPTIONS[k].name);
            if (strncmp(argv[i], OPTIONS[k].name, n) == 0
                && (argv[i][n] == '\0' || argv[i][n] == '=')) {
                spec = &OPTIONS[k];
                value = argv[i][n] == '=' ? argv[i] + n + 1 : NULL;
                break;
            }
        }
        if (spec == NULL) {
            say(s, LOG_WARNING, "ignoring unknown argument \"%s\"", argv[i]);
            continue;
        }
        if (spec->type == OPT_FLAG && value == NULL) {
            *(bool *) ((char *) opt + spec->offset) = true;
            continue;
        }
        if (spec->type == OPT_PATH && value != NULL && value[0] != '\0') {
            *(const char **) ((char *) opt + spec->offset) = value;
            continue;
        }
        if (spec->type == OPT_NUMBER && value != NULL) {
            errno = 0;
            num = strtoll(value, &end, 10);
            if (errno == 0 && end != value && *end == '\0'
                && num >= spec->min && num <= spec->max) {
                *(long long *) ((char *) opt + spec->offset) = num;
                continue;
            }
        }
        say(s, LOG_WARNING, "ignoring bad argument \"%s\"; see pam_slurmjwt(8)",
            argv[i]);
    }
}

/* ---- talking to the helper, within one deadline ---- */

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    long long left;
    int rc;

    for (;;) {
        left = deadline - now_ms();
        if (left <= 0)
            return 0;
        rc = poll(&pfd, 1, (int) left);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/*
 * Connect without blocking. A full listen backlog (EAGAIN) during a login
 * burst is worth retrying until the deadline; anything else is final.
 */
static int connect_helper(const char *path, long long deadline,
                          char *why, size_t whylen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, err = 0;
    socklen_t errlen = sizeof(err);

    if (path[0] != '/' || strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(why, whylen, "socket= \"%s\" is not an absolute path shorter "
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
        if (errno != EAGAIN || now_ms() + 10 >= deadline)
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
    snprintf(why, whylen, "cannot connect to helper \"%s\": %s; is "
             "slurmjwt-helper running?", path,
             errno == EAGAIN ? "listen queue full" : strerror(errno));
    close(fd);
    return -1;
}

/*
 * Send the request and read one response line into resp (at most
 * SJWT_RESPONSE_MAX bytes); return its length, or -1 with why filled in.
 */
static ssize_t ask_helper(const struct session *s, const char *req, size_t reqlen,
                          char *resp, char *why, size_t whylen)
{
    long long deadline = now_ms() + s->opt->timeout_ms;
    size_t got = 0, sent = 0;
    ssize_t n;
    int fd, rc;

    fd = connect_helper(s->opt->socket, deadline, why, whylen);
    if (fd < 0)
        return -1;
    while (sent < reqlen) {
        rc = wait_fd(fd, POLLOUT, deadline);
        /* MSG_NOSIGNAL: a helper that hangs up must not SIGPIPE sshd. */
        n = rc == 1 ? send(fd, req + sent, reqlen - sent, MSG_NOSIGNAL) : -1;
        if (n < 0 && rc == 1 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            snprintf(why, whylen, "sending to helper: %s",
                     rc == 0 ? "timed out" : strerror(errno));
            goto fail;
        }
        sent += (size_t) n;
    }
    while (got == 0 || memchr(resp, '\n', got) == NULL) {
        if (got == SJWT_RESPONSE_MAX) {
            snprintf(why, whylen, "helper response has no newline within %d "
                     "bytes", SJWT_RESPONSE_MAX);
            goto fail;
        }
        rc = wait_fd(fd, POLLIN, deadline);
        n = rc == 1 ? recv(fd, resp + got, SJWT_RESPONSE_MAX - got, 0) : -1;
        if (n < 0 && rc == 1 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            snprintf(why, whylen, "reading from helper: %s after %zu bytes",
                     n == 0 ? "connection closed" : rc == 0
                     ? "timed out" : strerror(errno), got);
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

/* ---- the session ---- */

/* Given a looked-up user, get a token and place it; every failure is logged. */
static void give_token(const struct session *s, const struct passwd *pw)
{
    char req[SJWT_REQUEST_MAX + 1];
    char resp[SJWT_RESPONSE_MAX];
    char why[LOG_LINE_MAX / 2];
    char env[sizeof("SLURM_JWT=") + SJWT_RESPONSE_MAX];
    struct sjwt_response r;
    const char *bad, *placed = "not exported (helper policy)";
    ssize_t len;
    int reqlen;

    reqlen = sjwt_format_request(req, sizeof(req), pw->pw_name);
    if (reqlen < 0) {
        say(s, LOG_ERR, "no token: user name cannot be sent to the helper");
        return;
    }
    len = ask_helper(s, req, (size_t) reqlen, resp, why, sizeof(why));
    if (len < 0) {
        say(s, LOG_ERR, "no token: %s", why);
        return;
    }
    bad = sjwt_parse_response(resp, (size_t) len, &r);
    if (bad != NULL) {
        say(s, LOG_ERR, "no token: bad helper response (%zd bytes): %s",
            len, bad);
        goto out;
    }
    if (r.kind == SJWT_RESP_ERR) {
        /* Policy refusals are the normal case for some users: stay quiet. */
        bool policy = strcmp(r.code, "denied") == 0 || strcmp(r.code, "no-user") == 0;
        say(s, policy ? LOG_DEBUG : LOG_ERR, "no token: helper said %s: %.*s",
            r.code, (int) r.message_len, r.message);
        goto out;
    }
    if (r.exp <= (long long) time(NULL)) {
        say(s, LOG_ERR, "no token: helper sent token fp=%016llx that expired "
            "at %lld; check the helper host's clock",
            (unsigned long long) sjwt_fingerprint(r.token, r.token_len), r.exp);
        goto out;
    }
    if (r.export_env && s->opt->noexport)
        placed = "not exported (noexport)";
    else if (r.export_env) {
        memcpy(env, "SLURM_JWT=", 10);
        memcpy(env + 10, r.token, r.token_len);
        env[10 + r.token_len] = '\0';
        placed = pam_putenv(s->pamh, env) == PAM_SUCCESS
            ? "exported" : "not exported (pam_putenv failed)";
    }
    say(s, LOG_INFO, "token fp=%016llx exp=%lld %s",
        (unsigned long long) sjwt_fingerprint(r.token, r.token_len), r.exp,
        placed);
    if (strcmp(s->opt->refresh, "none") != 0)
        hand_off(s, pw, resp, (size_t) len);
out:
    explicit_bzero(resp, sizeof(resp));
    explicit_bzero(env, sizeof(env));
}

/* Look the user up (reentrant: sshd may hold several PAM handles). */
static void open_session(const struct session *s)
{
    struct passwd pw, *found = NULL;
    long size = sysconf(_SC_GETPW_R_SIZE_MAX);
    char *buf;
    int rc;

    if (size <= 0 || size > 1024 * 1024)
        size = 16384;
    buf = malloc((size_t) size);
    if (buf == NULL) {
        say(s, LOG_ERR, "no token: out of memory");
        return;
    }
    rc = getpwnam_r(s->user, &pw, buf, (size_t) size, &found);
    if (found == NULL)
        say(s, LOG_ERR, "no token: cannot look up the user: %s",
            rc == 0 ? "no such user" : strerror(rc));
    else if ((long long) pw.pw_uid < s->opt->minuid)
        say(s, LOG_DEBUG, "skipped: uid %lu is below minuid=%lld",
            (unsigned long) pw.pw_uid, s->opt->minuid);
    else
        give_token(s, &pw);
    free(buf);
}

/* A user name with control bytes would forge lines in the log. */
static bool printable(const char *str)
{
    for (; *str != '\0'; str++)
        if ((unsigned char) *str < 0x20 || *str == 0x7f)
            return false;
    return true;
}

/* ---- PAM entry points: thin, and the only place return codes are chosen ---- */

/*
 * Always PAM_SUCCESS, even when no token was placed: the module fails open.
 * PAM_IGNORE would be the alternative, but libpam turns a stack in which
 * every module ignored into PAM_PERM_DENIED, which would close the session
 * in a stack holding only this module; PAM_SUCCESS opens it in every stack.
 */
PAM_PUBLIC int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc,
                                   const char **argv)
{
    struct options opt;
    struct session s = { .pamh = pamh, .opt = &opt, .user = "?" };
    const void *item = NULL;

    (void) flags;   /* PAM_SILENT changes nothing: we never converse */
    /* PAM_USER, not pam_get_user(): that could prompt on the terminal. */
    if (pam_get_item(pamh, PAM_USER, &item) == PAM_SUCCESS && item != NULL)
        s.user = printable(item) ? item : "(unprintable)";
    parse_options(&s, &opt, argc, argv);
    if (item == NULL)
        say(&s, LOG_ERR, "no token: PAM has no user name");
    else
        open_session(&s);
    return PAM_SUCCESS;
}

/* Nothing to undo: the token expires by itself and the cache is the user's. */
PAM_PUBLIC int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc,
                                    const char **argv)
{
    (void) pamh, (void) flags, (void) argc, (void) argv;
    return PAM_SUCCESS;
}

/* Not an auth/account/password module: PAM_IGNORE leaves those stacks as is. */
PAM_PUBLIC int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc,
                                   const char **argv)
{
    (void) pamh, (void) flags, (void) argc, (void) argv;
    return PAM_IGNORE;
}

PAM_PUBLIC int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc,
                              const char **argv)
{
    (void) pamh, (void) flags, (void) argc, (void) argv;
    return PAM_IGNORE;
}
