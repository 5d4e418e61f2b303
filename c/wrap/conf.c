/*
 * conf.c - read the few slurmjwt.conf keys the wrapper needs.
 *
 * slurm.conf syntax as pam_slurmjwt/config.py reads it: `Key=Value`, keys
 * case-insensitive, `#` starts a comment, values may be quoted. The file
 * must be root's, a regular file, not a symlink, not writable by group or
 * others, and at most 1 MiB: anything else is refused whole.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/client.h"
#include "conf.h"

#define CONF_MAX (1 << 20)

void wrap_conf_defaults(struct wrap_conf *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->helper_socket, "/run/slurmjwt/helper.sock");
    c->helper_timeout_ms = 3000;
    strcpy(c->slurm_bin_dir, "/usr/bin");
    strcpy(c->munge_socket, "/run/munge/munge.socket.2");
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
    } else if (strcasecmp(key, "MinUid") == 0)
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
