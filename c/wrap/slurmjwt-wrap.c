/*
 * slurmjwt-wrap.c - a Slurm client command that brings its own live token.
 *
 * Installed once, linked as /usr/lib/slurmjwt/bin/NAME for every Slurm
 * command that authenticates (see `slurmjwt wrappers`), and put first on
 * PATH by the PAM module and the shims. Run as NAME, it puts a valid token
 * from the user's cache in SLURM_JWT (asking slurmjwt-helper when the cache
 * is missing, due, or of another key), replacing whatever stale value was
 * inherited, then execs SlurmBinDir/NAME. A Slurm client reads SLURM_JWT once,
 * when it starts: so every command a long-lived process (a workflow manager,
 * an IDE's terminal, a notebook) starts gets a live token. The rules, with
 * the commands that reach slurmd and jobs, are in docs/internals.md ("The Slurm command wrappers").
 *
 * Warm path (a fresh cache): no interpreter, no helper round trip, no
 * process but the exec. It never prints on stdout, never execs anything but
 * SlurmBinDir/NAME, and says in one line on stderr what is wrong when it
 * cannot run that (exit 127), or when that (a site's script) runs NAME
 * through PATH and so this wrapper again: SLURMJWT_WRAPPED marks what it
 * ran. SLURMJWT_DEBUG=1 says what it decided.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/cache.h"
#include "../common/client.h"
#include "../common/protocol.h"
#include "../common/token.h"
#include "../common/userdir.h"
#include "clusters.h"
#include "conf.h"

#ifndef SLURMJWT_CONF_PATH
#define SLURMJWT_CONF_PATH "/etc/slurm/slurmjwt.conf"
#endif
#define PROG "slurmjwt-wrap"
#define NAME_MAX_LEN 64
#define WHY_MAX 512
#define RETRY_MS 50     /* pause before asking again after `busy` */
#define MARK "SLURMJWT_WRAPPED"   /* NAME:PID of the wrapper that last ran SlurmBinDir/NAME */
#define ANCESTORS_MAX 64          /* how far up the marker's process is looked for */

static int debugging;

__attribute__((format(printf, 1, 2)))
static void complain(const char *fmt, ...)
{
    va_list ap;

    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define debug(...) do { if (debugging) complain(__VA_ARGS__); } while (0)

/* True when SLURMJWT_DISABLE asks us to change nothing (set, not "" or "0"). */
static int disabled(void)
{
    const char *v = getenv("SLURMJWT_DISABLE");

    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/*
 * The commands that reach slurmd or slurmstepd, which never take a JWT (26.05's
 * srun refuses to start with one): srun launches steps, sattach and sbcast talk
 * to the job's nodes, sstat asks their slurmd for a step's usage (Slurm 22.05 to
 * 26.05; salloc, sbatch and the rest talk to slurmctld or slurmdbd only). They
 * lose SLURM_JWT wherever another way in works. Not here: scontrol, whose
 * listpids, listjobs, liststeps and show slurmd ask the local slurmd on a compute
 * node, and everything else it does asks slurmctld.
 */
static const char *const TO_SLURMD[] = { "srun", "sattach", "sbcast", "sstat" };

static int reaches_slurmd(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(TO_SLURMD) / sizeof(TO_SLURMD[0]); i++)
        if (strcmp(name, TO_SLURMD[i]) == 0)
            return 1;
    return 0;
}

/*
 * True when Slurm has another authentication than JWT here: munged's socket
 * under AuthType=auth/munge, sackd's under auth/slurm (wrap_other_auth, the
 * rule of config.py's export_wanted). Asked only where it matters: the commands
 * that reach slurmd, and a command left without a live token.
 */
static int other_auth_works(const struct wrap_conf *c)
{
    char auth[64], found[PATH_MAX];

    if (!wrap_other_auth(c, "", auth, sizeof(auth), found, sizeof(found)))
        return 0;
    debug("another way in than JWT works here: %s through %s", auth[0] ? auth : "slurm.conf "
          "unreadable, a socket", found);
    return 1;
}

/* The last component of argv[0], if it is a plain command name. */
static const char *command_name(const char *argv0)
{
    const char *name = strrchr(argv0, '/') ? strrchr(argv0, '/') + 1 : argv0;
    size_t i, n = strlen(name);

    if (n == 0 || n > NAME_MAX_LEN || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return NULL;
    for (i = 0; i < n; i++)
        if (!sjwt_is_token_char((unsigned char) name[i]))
            return NULL;
    return name;
}

/* The parent of process pid, from /proc/PID/stat; -1 when unknown. */
static long parent_of(long pid)
{
    char path[64], buf[512], *close;
    FILE *f;
    size_t n;
    long ppid;
    char state;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if ((f = fopen(path, "re")) == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "PID (COMM) S PPID ...": COMM may hold spaces and parentheses. */
    if ((close = strrchr(buf, ')')) == NULL || sscanf(close + 1, " %c %ld", &state, &ppid) != 2)
        return -1;
    return ppid;
}

/*
 * True when we are SlurmBinDir/NAME run again by itself: the marker, set by
 * the wrapper that ran it, names NAME and a process that is this one (the
 * site's script exec'd NAME through PATH) or an ancestor of it that is not
 * the real command (a script's shell, or a program it started, ran NAME
 * through PATH). An ancestor that is Slurm's own binary started a child that
 * runs NAME (salloc's shell running salloc): that is a command of its own.
 */
static int reentered(const char *name, const char *real)
{
    const char *mark = getenv(MARK), *colon;
    struct stat exe, st;
    char path[64], *end;
    long pid, at = (long) getpid();
    int i;

    if (mark == NULL || (colon = strrchr(mark, ':')) == NULL
        || (size_t) (colon - mark) != strlen(name) || strncmp(mark, name, strlen(name)) != 0)
        return 0;
    errno = 0;
    pid = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || pid <= 1)
        return 0;
    if (pid == at)
        return 1;
    for (i = 0; i < ANCESTORS_MAX && at > 1; i++) {
        if ((at = parent_of(at)) != pid)
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/exe", pid);
        /* Unreadable: not a process of ours, so not our loop. */
        return stat(path, &exe) == 0 && stat(real, &st) == 0
            && (exe.st_dev != st.st_dev || exe.st_ino != st.st_ino);
    }
    return 0;
}

/*
 * Find SlurmBinDir/NAME: a regular, executable file that is not this
 * wrapper and has not run this wrapper again (no loop, whatever the PATH,
 * the links or a site's script there); 0, or -1 after one line on stderr.
 */
static int find_real(const struct wrap_conf *c, const char *name, char *real, size_t size)
{
    struct stat st, self;
    const char *problem = NULL;

    if (snprintf(real, size, "%s/%s", c->slurm_bin_dir, name) >= (int) size) {
        complain("no real %s: SlurmBinDir is too long", name);
        return -1;
    }
    if (stat(real, &st) < 0 || access(real, X_OK) < 0)
        problem = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        problem = "not a regular file";
    if (problem != NULL) {
        complain("no real %s: %s: %s; install Slurm's %s or set SlurmBinDir in %s", name,
                 real, problem, name, SLURMJWT_CONF_PATH);
        return -1;
    }
    if (stat("/proc/self/exe", &self) == 0 && self.st_dev == st.st_dev
        && self.st_ino == st.st_ino) {
        complain("no real %s: %s is this wrapper; set SlurmBinDir in %s to where Slurm's "
                 "commands are", name, real, SLURMJWT_CONF_PATH);
        return -1;
    }
    if (reentered(name, real)) {
        complain("no real %s: %s runs %s through PATH, which is this wrapper again; make it "
                 "run Slurm's %s by its full path, or set SlurmBinDir in %s to where that is",
                 name, real, name, name, SLURMJWT_CONF_PATH);
        return -1;
    }
    return 0;
}

/* Exec SlurmBinDir/NAME, marked so that it cannot run us again unnoticed; 126 on failure. */
static int run_real(const char *name, const char *real, char **argv)
{
    char mark[NAME_MAX_LEN + 32];

    snprintf(mark, sizeof(mark), "%s:%ld", name, (long) getpid());
    setenv(MARK, mark, 1);
    execv(real, argv);
    complain("cannot run %s: %s", real, strerror(errno));
    return 126;
}

/* The caller's own name; NULL when NSS does not know the uid. */
static const char *my_name(void)
{
    static char name[SJWT_NAME_MAX + 1];
    struct passwd *pw = getpwuid(getuid());

    if (pw == NULL || strlen(pw->pw_name) > SJWT_NAME_MAX)
        return NULL;
    strcpy(name, pw->pw_name);
    return name;
}

/*
 * Ask the helper for our own token (again after `busy` or `timeout`, until
 * HelperTimeout); fill *e and return 0, or -1 with why filled in and *late
 * set when the helper accepted the connection and did not answer within
 * HelperTimeout (it hangs; a full queue or `busy` is load, which passes).
 */
static int fetch(const struct wrap_conf *c, struct sjwt_entry *e, char *why, size_t whylen,
                 int *late)
{
    char req[SJWT_REQUEST_MAX + 1], resp[SJWT_RESPONSE_MAX];
    long long deadline = sjwt_now_ms() + c->helper_timeout_ms;
    struct sjwt_response r;
    struct sjwt_claims claims;
    const char *bad, *me;
    unsigned char jitter = 0;
    ssize_t len;
    int reqlen = sjwt_format_request(req, sizeof(req), NULL), missing;

    for (;;) {
        *late = 0;
        len = sjwt_ask(c->helper_socket, deadline, req, (size_t) reqlen, resp, why,
                       whylen, &missing);
        if (len < 0) {
            *late = missing == SJWT_ASK_SILENT;
            return -1;
        }
        if ((bad = sjwt_parse_response(resp, (size_t) len, &r)) != NULL) {
            snprintf(why, whylen, "%s", bad);
            return -1;
        }
        if (r.kind == SJWT_RESP_OK)
            break;
        snprintf(why, whylen, "the helper said %s: %.*s", r.code, (int) r.message_len,
                 r.message);
        if (strcmp(r.code, "busy") != 0 && strcmp(r.code, "timeout") != 0)
            return -1;
        /* Jittered, so a burst of commands does not come back in lockstep. */
        if (getrandom(&jitter, 1, GRND_NONBLOCK) != 1)
            jitter = 0;
        if (sjwt_now_ms() + RETRY_MS * 2 >= deadline)
            return -1;
        usleep((useconds_t) (RETRY_MS + RETRY_MS * jitter / 255) * 1000);
    }
    me = my_name();
    if (sjwt_peek(r.token, r.token_len, &claims) != NULL || me == NULL
        || strcmp(claims.sun, me) != 0 || claims.exp != r.exp
        || strlen(claims.kid) != r.kid_len || memcmp(claims.kid, r.kid, r.kid_len) != 0) {
        snprintf(why, whylen, "refusing the helper's token: not the one announced for "
                 "this user");
        return -1;
    }
    memset(e, 0, sizeof(*e));
    e->exp = r.exp;
    e->refresh = r.refresh;
    e->export_env = r.export_env;
    memcpy(e->kid, r.kid, r.kid_len);
    memcpy(e->token, r.token, r.token_len);
    return 0;
}

/*
 * An inherited SLURM_JWT may stay only when it is a well-formed token for
 * this user, not expired and signed by the key in use.
 */
static int inherited_is_good(const char *token, const char *kid, long long now)
{
    struct sjwt_claims claims;
    const char *me;

    if (sjwt_peek(token, strlen(token), &claims) != NULL || claims.exp - SJWT_SAFETY <= now)
        return 0;
    me = my_name();
    return me != NULL && strcmp(claims.sun, me) == 0 && strcmp(claims.kid, kid) == 0;
}

/* The Export policy of slurmjwt.conf, as config.py's export_wanted. */
static int export_wanted(const struct wrap_conf *c)
{
    if (c->export_mode != EXPORT_AUTO)
        return c->export_mode == EXPORT_ALWAYS;
    return !other_auth_works(c);
}

/*
 * Cache a fresh entry. Outside a session the cache is SJWT_FALLBACK_BASE/UID,
 * which only root can make: slurmjwt-userdir makes it for us, once per boot.
 */
static void store(const struct wrap_conf *c, const char *dir, uid_t uid,
                  const struct sjwt_entry *e)
{
    char fallback[SJWT_CACHE_PATH_MAX], why[WHY_MAX] = "";
    struct stat st;

    if (sjwt_cache_dir(fallback, sizeof(fallback), uid, NULL, NULL) == 0
        && strcmp(dir, fallback) == 0 && lstat(dir, &st) < 0 && errno == ENOENT
        && sjwt_userdir_ask(c->helper_socket, why, sizeof(why)) < 0)
        debug("no cache directory made: %s", why);
    if (sjwt_cache_store(dir, uid, e, why, sizeof(why)) != SJWT_CACHE_OK)
        debug("token not cached: %s", why);
}

/* Put a live token in SLURM_JWT, or take out what must not be passed on. */
static void place_token(const struct wrap_conf *c, uid_t uid)
{
    char dir[SJWT_CACHE_PATH_MAX], keydir[SJWT_CACHE_PATH_MAX], kid[SJWT_KID_MAX + 1] = "";
    char why[WHY_MAX] = "";
    struct sjwt_entry e;
    const char *inherited, *stale = NULL;
    long long now = (long long) time(NULL);
    int rc, usable, cache_ok, late = 0;
    long long not_before;

    if (sjwt_key_dir(keydir, sizeof(keydir), c->helper_socket) < 0
        || sjwt_read_key_id(keydir, kid) < 0)
        debug("no key id in %s: every cached token counts as stale", keydir);
    cache_ok = sjwt_cache_dir(dir, sizeof(dir), uid, getenv("SLURMJWT_CACHE_DIR"),
                              getenv("XDG_RUNTIME_DIR")) == 0;
    if (!cache_ok)
        snprintf(why, sizeof(why), "the token cache's path is longer than %d bytes; set "
                 "SLURMJWT_CACHE_DIR or XDG_RUNTIME_DIR to a shorter one",
                 SJWT_CACHE_PATH_MAX - 1);
    rc = cache_ok ? sjwt_cache_load(dir, uid, &e, why, sizeof(why)) : SJWT_CACHE_NONE;
    if (rc == SJWT_CACHE_UNSAFE) {
        complain("%s", why);   /* someone loosened or replaced it: say so, never use it */
        cache_ok = 0;
    }
    /* The name (an NSS lookup) only when there is an entry to check. */
    usable = rc == SJWT_CACHE_OK && (stale = sjwt_entry_stale(&e, now, kid, my_name())) == NULL;
    if (!usable || e.refresh <= now) {
        debug(usable ? "cached token is due" : "no usable cached token (%s)",
              rc == SJWT_CACHE_OK ? stale : why);
        /* A helper that just took its whole timeout is not asked again for a
         * while: the next commands of a loop must not each wait as long. */
        not_before = cache_ok ? sjwt_cache_late_until(dir, uid, now) : 0;
        if (not_before)
            snprintf(why, sizeof(why), "the helper did not answer within HelperTimeout; "
                     "not asked again for %lld s", not_before - now);
        else if (fetch(c, &e, why, sizeof(why), &late) == 0) {
            usable = 1;
            if (cache_ok)
                store(c, dir, uid, &e);
            why[0] = '\0';
        } else if (late && cache_ok)
            sjwt_cache_note_late(dir, uid, now + SJWT_LATE_BACKOFF);
        if (usable && why[0] != '\0')
            debug("no new token (%s); the cached one is still good", why);
    }
    if (usable && e.export_env) {
        debug("SLURM_JWT set (exp %lld, kid %s)", e.exp, e.kid);
        setenv("SLURM_JWT", e.token, 1);
    } else if (usable) {
        debug("SLURM_JWT removed: the export policy says another way in works here");
        unsetenv("SLURM_JWT");
    } else {
        /* Asked once: it may read slurm.conf and look for sockets. */
        int wanted = export_wanted(c);

        if ((inherited = getenv("SLURM_JWT")) != NULL
            && !(wanted && inherited_is_good(inherited, kid, now))) {
            debug("SLURM_JWT removed: no live token, and the inherited one is not good");
            unsetenv("SLURM_JWT");
        }
        /* Where a token is the way in, a command about to fail says why. */
        if (getenv("SLURM_JWT") == NULL && wanted)
            complain("no Slurm token for this command: %s", why);
    }
    explicit_bzero(&e, sizeof(e));
}

/*
 * With Clusters= set, a command about to send this node's token to a
 * cluster outside it (named by -M/--clusters, else SLURM_CLUSTERS or
 * SBATCH_/SALLOC_CLUSTERS, else the
 * ClusterName of its slurm.conf) stops here, in one line, instead of failing
 * with Slurm's "Zero Bytes were transmitted or received": 1 then, else 0.
 */
static int cluster_refused(const struct wrap_conf *c, const char *conf, const char *name,
                           int argc, char **argv)
{
    char cluster[160], local[128];
    const char *list;

    if (c->clusters[0] == '\0' || getenv("SLURM_JWT") == NULL || !wrap_cluster_command(name))
        return 0;
    if ((list = wrap_argv_clusters(name, argc, argv)) == NULL
        && (list = wrap_env_clusters(name)) == NULL)
        list = wrap_cluster_name(c, local, sizeof(local)) == 0 ? local : "";
    if (!wrap_cluster_outside(c->clusters, list, cluster, sizeof(cluster)))
        return 0;
    complain("cluster %s does not take this login node's token (Clusters=%s in %s); ask your "
             "admins", cluster, c->clusters, conf);
    return 1;
}

static int usage(FILE *out, int code)
{
    fputs("usage: link a Slurm command name to " PROG " (slurmjwt wrappers --update)\n"
          "Runs SlurmBinDir/NAME with a live SLURM_JWT from the token cache or\n"
          "slurmjwt-helper; see docs/internals.md, \"The Slurm command wrappers\".\n", out);
    return code;
}

int main(int argc, char **argv)
{
    char real[PATH_MAX], why[WHY_MAX] = "";
    struct wrap_conf c;
    const char *name, *conf;
    uid_t uid = getuid();

    debugging = getenv("SLURMJWT_DEBUG") != NULL && strcmp(getenv("SLURMJWT_DEBUG"), "1") == 0;
    name = argc > 0 ? command_name(argv[0]) : NULL;
    if (name == NULL || strcmp(name, PROG) == 0) {
        if (argc == 2 && strcmp(argv[1], "--help") == 0)
            return usage(stdout, 0);
        return usage(stderr, 2);
    }
    /* Root's code takes no file a user named. */
    conf = uid != 0 && getenv("SLURMJWT_CONF") != NULL ? getenv("SLURMJWT_CONF")
                                                        : SLURMJWT_CONF_PATH;
    if (wrap_conf_load(&c, conf, why, sizeof(why)) < 0) {
        complain("%s; no token handling until that is fixed", why);
        if (find_real(&c, name, real, sizeof(real)) < 0)
            return 127;
        if (reaches_slurmd(name) && other_auth_works(&c))
            unsetenv("SLURM_JWT");
        return run_real(name, real, argv);
    }
    if (find_real(&c, name, real, sizeof(real)) < 0)
        return 127;
    if (reaches_slurmd(name) && other_auth_works(&c)) {
        debug("SLURM_JWT removed for %s: it reaches slurmd, and another way in works here",
              name);
        unsetenv("SLURM_JWT");
    } else if (disabled())
        debug("SLURMJWT_DISABLE is set: environment untouched");
    else if (getenv("SLURMD_NODENAME") != NULL)
        debug("inside a job (SLURMD_NODENAME): environment untouched");
    else if (uid == 0 || (long long) uid < c.min_uid)
        debug("uid %lu gets no token (root or below MinUid)", (unsigned long) uid);
    else {
        place_token(&c, uid);
        if (cluster_refused(&c, conf, name, argc, argv))
            return 1;
    }
    return run_real(name, real, argv);
}
