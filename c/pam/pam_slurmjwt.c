/*
 * pam_slurmjwt.c - give every login session a Slurm JWT (session stack only).
 *
 * Responsible for: the PAM entry points and their options; asking
 * slurmjwt-helper for a token for the PAM user; checking that the token is
 * that user's; putting SLURM_JWT into the PAM environment when the helper's
 * export policy says so; putting the Slurm command wrappers in front of the
 * PAM environment's PATH; logging. Elsewhere: the wire format and the helper connection
 * (../common/protocol.c, client.c), what a token says (../common/token.c),
 * writing the cache as the user (handoff.c, ../common/cache.c), minting
 * (the helper).
 *
 * It fails open, always: whatever goes wrong, open_session returns
 * PAM_SUCCESS, without a token, after at most timeout= milliseconds for the
 * helper and the cache together, with one syslog line saying why. Configure
 * it as "session optional"; never "sufficient", which would skip later
 * modules.
 *
 * Configuration comes only from module arguments and fixed paths, never from
 * the environment, which the user may influence. Arguments:
 *
 *   socket=PATH    helper socket (default /run/slurmjwt/root.sock, the
 *                  helper's root-only socket; when that is missing,
 *                  /run/slurmjwt/helper.sock is tried)
 *   timeout=MS     milliseconds for the helper exchange and the cache write
 *                  together, 1..60000 (default 2000); the login waits no
 *                  longer
 *   minuid=UID     users below it are skipped without asking (default 1000)
 *   wrappers=DIR   put DIR in front of PATH, so that every Slurm command
 *                  the session starts gets a live token (default
 *                  /usr/lib/slurmjwt/bin; only when DIR is a directory that
 *                  only root can change); "none" leaves PATH alone
 *   sshd_path=PATH sshd's compiled-in PATH for users (OpenSSH's
 *                  --with-default-path), put after DIR when the PAM service
 *                  is "sshd" and the PAM environment has no PATH, so that
 *                  `ssh host CMD` gets the wrappers too (default: that of
 *                  the distribution built on: /usr/local/bin:/usr/bin:/bin:/usr/games
 *                  on Debian and Ubuntu, /usr/local/bin:/usr/bin:/usr/local/sbin:/usr/sbin
 *                  on RHEL and Fedora, none elsewhere); "none" leaves the
 *                  PATH of such sessions alone
 *   nocache        do not write the user's token cache (nor remove a
 *                  previous owner's token from it at a login without one)
 *   noexport       never put SLURM_JWT in the PAM environment (the cache
 *                  is still written)
 *   debug          also log skipped users and policy refusals (LOG_DEBUG)
 *   noninteractive also run for the services cron, crond, atd and sudo,
 *                  which it skips otherwise (see below)
 *
 * Unknown or malformed arguments are logged once each and ignored.
 *
 * The PAM service "systemd-user" (systemd's per-user manager) gets nothing:
 * the manager copies its PAM environment into every user service it starts,
 * for as long as the user has a session (or for ever, with lingering), long
 * after a token from it has expired; its cache would be the login's anyway.
 * A fixed rule, not an argument: no site wants a token there, and Debian's
 * systemd-user stack includes common-session-noninteractive, RHEL's
 * system-auth, where the module is.
 *
 * cron, crond, atd and sudo are skipped unless the line says noninteractive:
 * a user decides how often they open sessions (a crontab of a thousand lines
 * is a thousand requests a minute on root's socket, which the helper serves
 * without per-user limits), and a sudoers rule that lets alice run one
 * command as bob would hand that command bob's whole Slurm identity. Their
 * work gets tokens from `slurmjwt exec` and the wrappers instead. RHEL's
 * shared stacks (password-auth serves crond, system-auth sudo) make this a
 * rule of the module's, not of where its line is.
 *
 * PATH: the session's PATH must be the one the application would have given,
 * with DIR in front. sshd, su and login set their own PATH after the session
 * is open (sshd's compiled default; su's caller's, or login.defs ENV_PATH
 * with -l; login's ENV_PATH), then copy the PAM environment over it: a PAM
 * PATH replaces theirs. So:
 *   - a PATH in the PAM environment (pam_env put it there) is the session's
 *     anyway: DIR goes in front of it;
 *   - none there and the service is "sshd" (the application names the
 *     service, not the user): sshd will set its compiled default for every
 *     user but root, a property of the distribution's OpenSSH build, so
 *     the module sets DIR:sshd_path, and `ssh host CMD`, which reads no
 *     profile, gets the wrappers too (the build picks sshd_path's default
 *     from /etc/os-release, mk/c.mk); root (SUPERUSER_PATH) is left alone;
 *   - none there and any other service (su, login, cron...): the module
 *     cannot know the application's PATH, so it leaves PATH alone; login
 *     shells get DIR from the profile.d shim.
 * See docs/internals.md, "The session's PATH".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "../common/cache.h"
#include "../common/client.h"
#include "../common/protocol.h"
#include "../common/token.h"
#include "handoff.h"

/* Built with -fvisibility=hidden: only the PAM entry points are exported. */
#define PAM_PUBLIC __attribute__((visibility("default")))

#define DEFAULT_SOCKET "/run/slurmjwt/root.sock"
#define USERS_SOCKET "/run/slurmjwt/helper.sock"
#ifndef SLURMJWT_WRAPPERS
#define SLURMJWT_WRAPPERS "/usr/lib/slurmjwt/bin"   /* LIBDIR/bin of make install */
#endif
#define DEFAULT_WRAPPERS SLURMJWT_WRAPPERS
#ifndef SLURMJWT_SSHD_PATH
#define SLURMJWT_SSHD_PATH "none"   /* mk/c.mk sets the distribution's */
#endif
#define LOG_LINE_MAX 512
#define PATH_VALUE_MAX 8192

/* Parsed module arguments; strings point into argv or at literals. */
struct options {
    bool debug;
    bool noexport;
    bool nocache;
    bool noninteractive;
    long long minuid;
    long long timeout_ms;
    const char *socket;
    const char *wrappers;       /* "none" leaves PATH alone */
    const char *sshd_path;      /* "none": sshd sessions without a PAM PATH keep sshd's */
};

/* What a session carries between its steps; one per open_session call. */
struct session {
    pam_handle_t *pamh;
    const struct options *opt;
    const char *user;
    long long deadline;
};

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
    { "nocache",  OPT_FLAG,   offsetof(struct options, nocache),    0, 0 },
    { "noninteractive", OPT_FLAG, offsetof(struct options, noninteractive), 0, 0 },
    { "minuid",   OPT_NUMBER, offsetof(struct options, minuid),     0, 4294967295LL },
    { "timeout",  OPT_NUMBER, offsetof(struct options, timeout_ms), 1, SJWT_TIMEOUT_MAX_MS },
    { "socket",   OPT_PATH,   offsetof(struct options, socket),     0, 0 },
    { "wrappers", OPT_PATH,   offsetof(struct options, wrappers),   0, 0 },
    { "sshd_path", OPT_PATH,  offsetof(struct options, sshd_path),  0, 0 },
};

__attribute__((format(printf, 3, 4)))
static void say(const struct session *s, int prio, const char *fmt, ...)
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
        .minuid = 1000, .timeout_ms = 2000, .socket = DEFAULT_SOCKET,
        .wrappers = DEFAULT_WRAPPERS, .sshd_path = SLURMJWT_SSHD_PATH,
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
        say(s, LOG_WARNING, "ignoring bad argument \"%s\"; see pam_slurmjwt(8)", argv[i]);
    }
}

/* ---- PATH ---- */

/* True when dir is one of the colon-separated components of path. */
static bool on_path(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    const char *p;

    for (p = path; p != NULL; p = strchr(p, ':') ? strchr(p, ':') + 1 : NULL)
        if (strncmp(p, dir, n) == 0 && (p[n] == ':' || p[n] == '\0'))
            return true;
    return false;
}

/*
 * Put the wrapper directory in front of the session's PATH (see the top): a
 * directory on everybody's PATH that someone else could write would run
 * their programs as every user, so it must be a directory only root can
 * change.
 */
static void put_wrappers_on_path(const struct session *s, const struct passwd *pw)
{
    const char *dir = s->opt->wrappers, *old, *service = NULL;
    const void *item = NULL;
    char value[PATH_VALUE_MAX];
    struct stat st;
    int n;

    if (strcmp(dir, "none") == 0)
        return;
    if (dir[0] != '/' || strchr(dir, ':') != NULL || stat(dir, &st) < 0
        || !S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0) {
        say(s, LOG_ERR, "wrappers= \"%s\" is not an absolute directory that only root can "
            "change; PATH left alone", dir);
        return;
    }
    old = pam_getenv(s->pamh, "PATH");
    if (old == NULL) {
        if (pam_get_item(s->pamh, PAM_SERVICE, &item) == PAM_SUCCESS)
            service = item;
        /* sshd gives root its SUPERUSER_PATH, not _PATH_STDPATH. */
        if (service == NULL || strcmp(service, "sshd") != 0 || pw->pw_uid == 0
            || strcmp(s->opt->sshd_path, "none") == 0) {
            say(s, LOG_DEBUG, "no PATH in the PAM environment: the application's stays, "
                "without \"%s\"", dir);
            return;
        }
        old = s->opt->sshd_path;
    } else if (on_path(old, dir))
        return;
    n = snprintf(value, sizeof(value), "PATH=%s:%s", dir, old);
    if (n < 0 || (size_t) n >= sizeof(value) || pam_putenv(s->pamh, value) != PAM_SUCCESS)
        say(s, LOG_ERR, "could not put \"%s\" on PATH", dir);
}

/* ---- the token ---- */

/* Ask the helper; fall back to the users' socket when the root one is missing. */
static ssize_t ask(const struct session *s, const char *req, size_t reqlen, char *resp,
                   char *why, size_t whylen)
{
    ssize_t len;
    int missing = 0;

    len = sjwt_ask(s->opt->socket, s->deadline, req, reqlen, resp, why, whylen, &missing);
    if (len < 0 && missing == SJWT_ASK_MISSING && strcmp(s->opt->socket, DEFAULT_SOCKET) == 0) {
        say(s, LOG_DEBUG, "no %s; asking %s", DEFAULT_SOCKET, USERS_SOCKET);
        len = sjwt_ask(USERS_SOCKET, s->deadline, req, reqlen, resp, why, whylen, &missing);
    }
    return len;
}

/*
 * Return NULL when the token in r is the PAM user's, with the exp and kid
 * the helper announced; otherwise why not.
 */
static const char *not_the_users(const struct session *s, const struct sjwt_response *r)
{
    struct sjwt_claims c;
    const char *bad = sjwt_peek(r->token, r->token_len, &c);

    if (bad != NULL)
        return bad;
    if (strcmp(c.sun, s->user) != 0)
        return "the token is for another user";
    if (c.exp != r->exp)
        return "the token's exp is not the one announced";
    if (strlen(c.kid) != r->kid_len || memcmp(c.kid, r->kid, r->kid_len) != 0)
        return "the token's kid is not the one announced";
    return NULL;
}

/*
 * No token for this login: a fallback cache under the user's uid may still
 * hold a previous owner's live token (a uid given to someone else within
 * one boot), readable by this user; the child removes it, as the user,
 * within what is left of the deadline. A grant rewrites both files instead.
 */
static void forget_others_token(const struct session *s, const struct passwd *pw)
{
    char why[LOG_LINE_MAX / 2] = "";
    int rc;

    if (s->opt->nocache)
        return;
    if (sjwt_poll_ms(s->deadline) <= 0) {
        say(s, LOG_DEBUG, "no time left to check the cache for another user's token");
        return;
    }
    rc = handoff_forget_others(pw, pam_getenv(s->pamh, "XDG_RUNTIME_DIR"), s->deadline, why,
                               sizeof(why));
    if (rc < 0)
        say(s, LOG_ERR, "could not check the cache for another user's token: %s", why);
    else if (rc > 0)
        say(s, LOG_INFO, "removed a cached token that was not the user's from %s/%lu",
            SJWT_FALLBACK_BASE, (unsigned long) pw->pw_uid);
}

/* Given a looked-up user, get a token and place it; every failure is logged. */
static void give_token(const struct session *s, const struct passwd *pw)
{
    char req[SJWT_REQUEST_MAX + 1];
    char resp[SJWT_RESPONSE_MAX];
    char why[LOG_LINE_MAX / 2] = "";
    char env[sizeof("SLURM_JWT=") + SJWT_TOKEN_MAX];
    struct sjwt_entry e;
    struct sjwt_response r;
    const char *bad, *placed = "not exported (helper policy)";
    unsigned long long fp;
    ssize_t len;
    int reqlen, cached = 0;

    reqlen = sjwt_format_request(req, sizeof(req), pw->pw_name);
    if (reqlen < 0) {
        say(s, LOG_ERR, "no token: user name cannot be sent to the helper");
        goto out;
    }
    len = ask(s, req, (size_t) reqlen, resp, why, sizeof(why));
    if (len < 0) {
        say(s, LOG_ERR, "no token: %s", why);
        goto out;
    }
    bad = sjwt_parse_response(resp, (size_t) len, &r);
    if (bad != NULL) {
        say(s, LOG_ERR, "no token: bad helper response (%zd bytes): %s", len, bad);
        goto out;
    }
    if (r.kind == SJWT_RESP_ERR) {
        /* Policy refusals are the normal case for some users: stay quiet. */
        bool policy = strcmp(r.code, "denied") == 0 || strcmp(r.code, "no-user") == 0;
        say(s, policy ? LOG_DEBUG : LOG_ERR, "no token: helper said %s: %.*s",
            r.code, (int) r.message_len, r.message);
        goto out;
    }
    fp = (unsigned long long) sjwt_fingerprint(r.token, r.token_len);
    if ((bad = not_the_users(s, &r)) != NULL) {
        say(s, LOG_ERR, "no token: refusing token fp=%016llx from the helper: %s", fp, bad);
        goto out;
    }
    if (r.exp <= (long long) time(NULL)) {
        say(s, LOG_ERR, "no token: helper sent token fp=%016llx that expired at %lld; "
            "check the helper host's clock", fp, r.exp);
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
    say(s, LOG_INFO, "token fp=%016llx exp=%lld kid=%.*s %s", fp, r.exp, (int) r.kid_len,
        r.kid, placed);
    if (!s->opt->nocache) {
        e = (struct sjwt_entry) { .exp = r.exp, .refresh = r.refresh,
                                  .export_env = r.export_env };
        memcpy(e.kid, r.kid, r.kid_len);
        memcpy(e.token, r.token, r.token_len);
        if (handoff_store(pw, pam_getenv(s->pamh, "XDG_RUNTIME_DIR"), &e, s->deadline,
                          why, sizeof(why)) < 0)
            say(s, LOG_ERR, "token not cached: %s", why);
        else {
            say(s, LOG_DEBUG, "token cached");
            cached = 1;
        }
        explicit_bzero(&e, sizeof(e));
    }
out:
    explicit_bzero(resp, sizeof(resp));
    explicit_bzero(env, sizeof(env));
    if (!cached)
        forget_others_token(s, pw);
}

/* Why this PAM service gets nothing (see the top), or NULL. */
static const char *skipped_service(pam_handle_t *pamh, const struct options *opt)
{
    static const char *const noninteractive[] = { "cron", "crond", "atd", "sudo" };
    const void *item = NULL;
    size_t i;

    if (pam_get_item(pamh, PAM_SERVICE, &item) != PAM_SUCCESS || item == NULL)
        return NULL;
    if (strcmp(item, "systemd-user") == 0)
        return "the systemd user manager's environment would keep the token past its expiry";
    for (i = 0; !opt->noninteractive && i < sizeof(noninteractive) / sizeof(*noninteractive); i++)
        if (strcmp(item, noninteractive[i]) == 0)
            return "cron, at and sudo sessions need the noninteractive argument";
    return NULL;
}

/* Look the user up (reentrant: sshd may hold several PAM handles). */
static void open_session(struct session *s)
{
    struct passwd pw, *found = NULL;
    long size = sysconf(_SC_GETPW_R_SIZE_MAX);
    char *buf;
    const char *skip = skipped_service(s->pamh, s->opt);
    int rc;

    if (skip != NULL) {
        say(s, LOG_DEBUG, "skipped: %s", skip);
        return;
    }
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
    else {
        s->deadline = sjwt_now_ms() + s->opt->timeout_ms;
        put_wrappers_on_path(s, &pw);
        give_token(s, &pw);
    }
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
