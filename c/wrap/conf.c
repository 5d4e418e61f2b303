/*
 * conf.c - read the few slurmjwt.conf keys the wrapper needs.
 *
 * slurm.conf syntax as pam_slurmjwt/config.py reads it: `Key=Value`, keys
 * case-insensitive, `#` starts a comment, values may be quoted. The file
 * must be root's, a regular file, not a symlink, not writable by group or
 * others, and at most 1 MiB: anything else is refused whole. And the few
 * slurm.conf settings the Export=auto rule needs (AuthType, AuthInfo,
 * ClusterName, which Clusters= is checked against too), read as
 * pam_slurmjwt/slurmconf.py reads them.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/client.h"
#include "conf.h"

#define CONF_MAX (1 << 20)
#define SLURM_CONF_MAX (4 << 20)   /* slurmconf.py's MAX_BYTES, per file */
#define INCLUDE_DEPTH_MAX 8        /* slurmconf.py's MAX_INCLUDE_DEPTH */
#define MUNGE_SOCKET "/run/munge/munge.socket.2"

void wrap_conf_defaults(struct wrap_conf *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->helper_socket, "/run/slurmjwt/helper.sock");
    c->helper_timeout_ms = 3000;
    strcpy(c->slurm_bin_dir, "/usr/bin");
    c->min_uid = 1000;
    c->export_mode = EXPORT_AUTO;
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char) *s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char) end[-1]))
        *--end = '\0';
    return s;
}

/* Whole number of at most 9 digits, as config.py takes it. */
static int whole(const char *v, long long min, long long *out)
{
    size_t i, n = strlen(v);

    if (n == 0 || n > 9)
        return -1;
    for (i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return -1;
    *out = atoll(v);
    return *out < min ? -1 : 0;
}

/*
 * A comma-separated list as config.py takes it (items trimmed, empty ones
 * dropped), in lower case as Slurm keeps cluster names.
 */
static int names(const char *v, char *out, size_t size)
{
    size_t n = 0, len;
    const char *item = v, *end;

    out[0] = '\0';
    for (; *item != '\0'; item = *end ? end + 1 : end) {
        end = item + strcspn(item, ",");
        while (item < end && isspace((unsigned char) *item))
            item++;
        len = (size_t) (end - item);
        while (len > 0 && isspace((unsigned char) item[len - 1]))
            len--;
        if (len == 0)
            continue;
        if (n + len + 2 > size)
            return -1;
        if (n > 0)
            out[n++] = ',';
        while (len-- > 0)
            out[n++] = (char) tolower((unsigned char) *item++);
        out[n] = '\0';
    }
    return 0;
}

static int path(const char *v, char *out, size_t size)
{
    if (v[0] != '/' || strlen(v) >= size)
        return -1;
    strcpy(out, v);
    return 0;
}

/*
 * Apply one Key=Value; -1 with why filled in when the value is bad for a
 * key we read (where is "file:line").
 */
static int apply(struct wrap_conf *c, const char *key, const char *v, const char *where,
                 char *why, size_t whylen)
{
    long long n;
    int rc = 0;

    if (strcasecmp(key, "HelperSocket") == 0)
        rc = path(v, c->helper_socket, sizeof(c->helper_socket));
    else if (strcasecmp(key, "SlurmBinDir") == 0)
        rc = path(v, c->slurm_bin_dir, sizeof(c->slurm_bin_dir));
    else if (strcasecmp(key, "MungeSocket") == 0)
        rc = path(v, c->munge_socket, sizeof(c->munge_socket));
    else if (strcasecmp(key, "SlurmConf") == 0)
        rc = path(v, c->slurm_conf, sizeof(c->slurm_conf));
    else if (strcasecmp(key, "HelperTimeout") == 0) {
        /* Bounded as config.py bounds it, in the same words: a timeout of
         * days would have the wrapper wait as long for a hung helper. */
        if ((rc = whole(v, 1, &n)) == 0 && n > SJWT_TIMEOUT_MAX_MS / 1000) {
            snprintf(why, whylen, "%s: HelperTimeout=%lld is above the maximum %d", where, n,
                     SJWT_TIMEOUT_MAX_MS / 1000);
            return -1;
        }
        if (rc == 0)
            c->helper_timeout_ms = n * 1000;
    } else if (strcasecmp(key, "Clusters") == 0)
        rc = names(v, c->clusters, sizeof(c->clusters));
    else if (strcasecmp(key, "MinUid") == 0)
        rc = whole(v, 0, &c->min_uid);
    else if (strcasecmp(key, "Export") == 0) {
        if (strcasecmp(v, "auto") == 0)
            c->export_mode = EXPORT_AUTO;
        else if (strcasecmp(v, "always") == 0)
            c->export_mode = EXPORT_ALWAYS;
        else if (strcasecmp(v, "never") == 0)
            c->export_mode = EXPORT_NEVER;
        else
            rc = -1;
    }
    if (rc < 0)
        snprintf(why, whylen, "%s: bad value for %s", where, key);
    return rc;
}

/* The keys of text (changed in place) into *c; -1 with why at the first bad one. */
static int parse(struct wrap_conf *c, char *text, const char *file, char *why, size_t whylen)
{
    char *line, *next, *eq, *key, *v, where[PATH_MAX + 16];
    int number = 0;
    size_t n;

    for (line = text; line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        number++;
        if ((eq = strchr(line, '#')) != NULL)
            *eq = '\0';
        if ((eq = strchr(line, '=')) == NULL)
            continue;
        *eq = '\0';
        key = trim(line);
        v = trim(eq + 1);
        n = strlen(v);
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
            v[n - 1] = '\0';
            v++;
        }
        snprintf(where, sizeof(where), "%s:%d", file, number);
        if (apply(c, key, v, where, why, whylen) < 0)
            return -1;
    }
    return 0;
}

int wrap_conf_parse(struct wrap_conf *c, char *text, const char *file, char *why,
                    size_t whylen)
{
    wrap_conf_defaults(c);
    if (parse(c, text, file, why, whylen) == 0)
        return 0;
    wrap_conf_defaults(c);
    return -1;
}

int wrap_conf_load(struct wrap_conf *c, const char *file, char *why, size_t whylen)
{
    struct stat st;
    char *text;
    ssize_t n, got = 0;
    int fd, rc = -1;

    wrap_conf_defaults(c);
    fd = open(file, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(why, whylen, "cannot read configuration \"%s\": %s", file,
                 errno == ELOOP ? "it is a symlink; replace it with the real file"
                                : strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        snprintf(why, whylen, "cannot use configuration \"%s\": not a regular file", file);
    else if (st.st_uid != 0)
        snprintf(why, whylen, "cannot use configuration \"%s\": owned by uid %lu, not root; "
                 "run chown root: \"%s\"", file, (unsigned long) st.st_uid, file);
    else if (st.st_mode & 022)
        snprintf(why, whylen, "cannot use configuration \"%s\": mode %04o lets others change "
                 "it; run chmod go-w \"%s\"", file, (unsigned) (st.st_mode & 07777), file);
    else if (st.st_size > CONF_MAX)
        snprintf(why, whylen, "cannot use configuration \"%s\": larger than %d bytes", file,
                 CONF_MAX);
    else if ((text = malloc((size_t) st.st_size + 1)) == NULL)
        snprintf(why, whylen, "out of memory");
    else {
        while (got < st.st_size && (n = read(fd, text + got, (size_t) (st.st_size - got))) != 0)
            if (n > 0)
                got += n;
            else if (errno != EINTR)
                break;
        text[got] = '\0';
        rc = wrap_conf_parse(c, text, file, why, whylen);
        free(text);
    }
    close(fd);
    if (rc < 0)
        wrap_conf_defaults(c);
    return rc;
}

/* What the rule needs from slurm.conf; the last line that sets a key wins. */
struct slurm_auth {
    char type[64];          /* AuthType, lower case; "" unset (auth/munge) */
    char info[PATH_MAX];    /* AuthInfo */
    char cluster[128];      /* ClusterName, lower case, as Slurm keeps it */
};

static void take(char *out, size_t size, const char *v, int lower)
{
    size_t i, n;

    /* The first word, or a quoted value without its quotes, as slurmconf.py keeps it. */
    if (v[0] == '"')
        n = strcspn(++v, "\"");
    else
        n = strcspn(v, " \t");

    if (n >= size)
        n = size - 1;
    for (i = 0; i < n; i++)
        out[i] = lower ? (char) tolower((unsigned char) v[i]) : v[i];
    out[n] = '\0';
}

static int read_slurm_conf(const char *file, struct slurm_auth *sa, int depth);

/* Every file an Include pattern names, relative to the including file's folder. */
static int include(const char *file, const char *pattern, struct slurm_auth *sa, int depth)
{
    char dir[PATH_MAX], full[PATH_MAX];
    glob_t g;
    size_t i;
    int rc = 0;

    if (pattern[0] == '/')
        snprintf(full, sizeof(full), "%s", pattern);
    else {
        snprintf(dir, sizeof(dir), "%s", file);
        snprintf(full, sizeof(full), "%s/%s", dirname(dir), pattern);
    }
    if (glob(full, 0, NULL, &g) != 0)
        return 0;
    for (i = 0; i < g.gl_pathc && rc == 0; i++)
        rc = read_slurm_conf(g.gl_pathv[i], sa, depth + 1);
    globfree(&g);
    return rc;
}

/* The keys of one slurm.conf file into *sa; -1 when it or an Include cannot be read. */
static int read_slurm_conf(const char *file, struct slurm_auth *sa, int depth)
{
    char *line = NULL, *key, *v, *cut;
    size_t cap = 0, total = 0, n;
    ssize_t len;
    struct stat st;
    FILE *f;
    int fd, rc = 0;

    /*
     * The user may name any file in SLURM_CONF: only a regular one of
     * bounded size is read (no FIFO to wait on, no /dev/zero to fill memory).
     */
    if (depth > INCLUDE_DEPTH_MAX
        || (fd = open(file, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SLURM_CONF_MAX
        || (f = fdopen(fd, "r")) == NULL) {
        close(fd);
        return -1;
    }
    while (rc == 0 && (len = getline(&line, &cap, f)) > 0) {
        if ((total += (size_t) len) > SLURM_CONF_MAX) {
            rc = -1;
            break;
        }
        if ((cut = strchr(line, '#')) != NULL)
            *cut = '\0';
        key = trim(line);
        if ((cut = strchr(key, '=')) != NULL) {
            *cut = '\0';
            v = trim(cut + 1);
            key = trim(key);
        } else if ((cut = strpbrk(key, " \t")) != NULL) {   /* "Include PATH" */
            *cut = '\0';
            v = trim(cut + 1);
        } else
            continue;
        if (strcasecmp(key, "Include") == 0) {
            n = strlen(v);
            if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
                v[n - 1] = '\0';
                v++;
            }
            rc = include(file, v, sa, depth);
        } else if (strcasecmp(key, "AuthType") == 0)
            take(sa->type, sizeof(sa->type), v, 1);
        else if (strcasecmp(key, "AuthInfo") == 0)
            take(sa->info, sizeof(sa->info), v, 0);
        else if (strcasecmp(key, "ClusterName") == 0)
            take(sa->cluster, sizeof(sa->cluster), v, 1);
    }
    free(line);
    fclose(f);
    return rc;
}

/* munged's socket as auth/munge finds it in AuthInfo: socket=, or the old bare path. */
static int authinfo_socket(const char *info, char *out, size_t size)
{
    const char *item = info, *end, *eq;

    if (info[0] != '\0' && strchr(info, '=') == NULL)
        return snprintf(out, size, "%s", info) < (int) size ? 0 : -1;
    for (; *item != '\0'; item = *end ? end + 1 : end) {
        end = item + strcspn(item, ",");
        eq = memchr(item, '=', (size_t) (end - item));
        while (item < end && isspace((unsigned char) *item))
            item++;
        if (eq != NULL && eq - item >= 6 && strncasecmp(item, "socket", 6) == 0
            && (eq - item == 6 || isspace((unsigned char) item[6])) && eq + 1 < end) {
            snprintf(out, size, "%.*s", (int) (end - eq - 1), eq + 1);
            return 0;
        }
    }
    return -1;
}

static int is_socket(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Whether path is a socket; if so, it goes to found. */
static int try_socket(const char *path, char *found, size_t foundlen)
{
    if (!is_socket(path))
        return 0;
    snprintf(found, foundlen, "%s", path);
    return 1;
}

/* sackd's sockets, in the order an auth/slurm client tries them (src/common/sack_api.c). */
static int try_sack(const char *root, const char *cluster, char *found, size_t foundlen)
{
    static const char *const fixed[] = { "/run/slurm/sack.socket", "/run/slurmctld/sack.socket",
                                         "/run/slurmdbd/sack.socket" };
    const char *env = getenv("SLURM_SACK_SOCKET");
    char p[PATH_MAX];
    size_t i;

    if (env != NULL && env[0] != '\0')
        return try_socket(env, found, foundlen);
    if (cluster[0] != '\0') {
        snprintf(p, sizeof(p), "%s/run/slurm-%s/sack.socket", root, cluster);
        if (try_socket(p, found, foundlen))
            return 1;
    }
    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", root, fixed[i]);
        if (try_socket(p, found, foundlen))
            return 1;
    }
    return 0;
}

/* The slurm.conf the command about to run reads. */
static void slurm_conf_path(const struct wrap_conf *c, const char *root, char *conf,
                            size_t size)
{
    const char *env = getenv("SLURM_CONF");

    if (env != NULL && env[0] != '\0')
        snprintf(conf, size, "%s", env);
    else if (c->slurm_conf[0] != '\0')
        snprintf(conf, size, "%s", c->slurm_conf);
    else {
        snprintf(conf, size, "%s/etc/slurm/slurm.conf", root);
        if (access(conf, F_OK) < 0)
            snprintf(conf, size, "%s/run/slurm/conf/slurm.conf", root);
    }
}

int wrap_cluster_name(const struct wrap_conf *c, char *out, size_t outlen)
{
    struct slurm_auth sa;
    char conf[PATH_MAX];

    memset(&sa, 0, sizeof(sa));
    slurm_conf_path(c, "", conf, sizeof(conf));
    if (read_slurm_conf(conf, &sa, 0) < 0 || sa.cluster[0] == '\0')
        return -1;
    snprintf(out, outlen, "%s", sa.cluster);
    return 0;
}

int wrap_other_auth(const struct wrap_conf *c, const char *root, char *auth, size_t authlen,
                    char *found, size_t foundlen)
{
    struct slurm_auth sa;
    char conf[PATH_MAX], munge[PATH_MAX];
    int read;

    memset(&sa, 0, sizeof(sa));
    slurm_conf_path(c, root, conf, sizeof(conf));
    read = read_slurm_conf(conf, &sa, 0) == 0;
    if (read && sa.type[0] == '\0')
        strcpy(sa.type, "auth/munge");   /* Slurm's default */
    snprintf(auth, authlen, "%s", read ? sa.type : "");
    if (c->munge_socket[0] != '\0')
        snprintf(munge, sizeof(munge), "%s", c->munge_socket);
    else if (!read || authinfo_socket(sa.info, munge, sizeof(munge)) < 0)
        snprintf(munge, sizeof(munge), "%s%s", root, MUNGE_SOCKET);
    found[0] = '\0';
    if (!read)
        return try_socket(munge, found, foundlen) || try_sack(root, "", found, foundlen);
    if (strcmp(sa.type, "auth/munge") == 0)
        return try_socket(munge, found, foundlen);
    if (strcmp(sa.type, "auth/slurm") == 0)
        return try_sack(root, sa.cluster, found, foundlen);
    return 0;
}
