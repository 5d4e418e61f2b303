/*
 * cache.c - the per-user token cache, format 2, as pam_slurmjwt/cache.py
 * writes and reads it (docs/internals.md is the contract).
 *
 * Every open is relative to a descriptor of the checked cache directory and
 * refuses symlinks; files are new temp files renamed into place, so readers
 * (shells with `read`, tcsh with `source`) never see half a line. No
 * allocation: the PAM module calls this in a forked copy of sshd.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "token.h"

#define FORMAT "slurmjwt2"
#define NUMBER_DIGITS_MAX 12
#define LINE_MAX_BYTES (SJWT_TOKEN_MAX + SJWT_KID_MAX + SJWT_BOOT_ID_MAX + 128)

static void say(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    if (why == NULL || whylen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

int sjwt_cache_dir(char *buf, size_t size, uid_t uid, const char *override,
                   const char *xdg)
{
    struct stat st;
    int n;

    if (override != NULL && override[0] != '\0' && uid != 0)
        n = snprintf(buf, size, "%s", override);
    else if (xdg != NULL && xdg[0] == '/' && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode)
             && st.st_uid == uid)
        n = snprintf(buf, size, "%s/slurmjwt", xdg);
    else
        n = snprintf(buf, size, "%s/%lu", SJWT_FALLBACK_BASE, (unsigned long) uid);
    return n < 0 || (size_t) n >= size ? -1 : 0;
}

/* Read at most size bytes of a small file; return the count or -1. */
static ssize_t slurp(int dfd, const char *name, char *buf, size_t size)
{
    ssize_t n, got = 0;
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while ((size_t) got < size) {
        n = read(fd, buf + got, size - (size_t) got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += n;
    }
    close(fd);
    return got;
}

int sjwt_parse_key_id(const char *buf, size_t len, char kid[SJWT_KID_MAX + 1])
{
    size_t i;

    /* 1 to SJWT_KID_MAX id characters and a newline, as cache.py's is_kid. */
    if (len < 2 || len - 1 > SJWT_KID_MAX || buf[len - 1] != '\n')
        return -1;
    for (i = 0; i < len - 1; i++)
        if (!sjwt_is_kid_char((unsigned char) buf[i]))
            return -1;
    memcpy(kid, buf, len - 1);
    kid[len - 1] = '\0';
    return 0;
}

int sjwt_read_key_id(const char *keydir, char kid[SJWT_KID_MAX + 1])
{
    /* One byte more than the longest id and its newline: a longer file is
     * seen as longer, never as a prefix that happens to end in a newline. */
    char buf[SJWT_KID_MAX + 2], path[SJWT_CACHE_PATH_MAX];
    ssize_t n;

    if (snprintf(path, sizeof(path), "%s/id", keydir) >= (int) sizeof(path))
        return -1;
    n = slurp(AT_FDCWD, path, buf, sizeof(buf));
    return n < 0 ? -1 : sjwt_parse_key_id(buf, (size_t) n, kid);
}

/* floor and ceil to whole seconds, without libm. */
static long long floor_ll(double x)
{
    long long t = (long long) x;

    return (double) t > x ? t - 1 : t;
}

static long long ceil_ll(double x)
{
    long long t = (long long) x;

    return (double) t < x ? t + 1 : t;
}

int sjwt_cache_format(char *buf, size_t size, const struct sjwt_entry *e,
                      double now, double uptime, const char *boot_id)
{
    /* As cache.py: shims compare whole uptime seconds, so round so they
     * never see the entry due before a refresh would, nor valid past
     * exp - SAFETY. Same operations, same order: the same doubles. */
    long long refresh_up = ceil_ll((double) e->refresh - now + uptime);
    long long expire_up = floor_ll((double) e->exp - SJWT_SAFETY - now + uptime);
    int n = snprintf(buf, size, FORMAT " %s %lld %lld %lld %d %s %s end\n", boot_id,
                     refresh_up, expire_up, e->exp, e->export_env ? 1 : 0, e->kid, e->token);

    return n < 0 || (size_t) n >= size ? -1 : n;
}

/* Read one field up to the next space: [*pp, end). */
static const char *field(const char **pp, const char *end, size_t *len)
{
    const char *start = *pp, *sp = memchr(start, ' ', (size_t) (end - start));

    if (sp == NULL)
        return NULL;
    *len = (size_t) (sp - start);
    *pp = sp + 1;
    return start;
}

/* A decimal of 1 to 12 digits, with a leading '-' when allowed. */
static int number(const char *s, size_t len, int sign, long long *out)
{
    long long v = 0;
    size_t i = 0;
    int neg = 0;

    if (sign && len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (len - i == 0 || len - i > NUMBER_DIGITS_MAX)
        return -1;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

const char *sjwt_cache_parse(const char *buf, size_t len, struct sjwt_entry *e)
{
    const char *p = buf, *end = buf + len, *f[8];
    size_t n[8], i, dots = 0;
    long long rup, eup;

    memset(e, 0, sizeof(*e));
    if (len < 5 || memcmp(end - 5, " end\n", 5) != 0)
        return "line does not end with \" end\" and a newline (torn)";
    end -= 4;   /* up to and including the space before "end" */
    for (i = 0; i < 8; i++)
        if ((f[i] = field(&p, end, &n[i])) == NULL || n[i] == 0)
            return "line does not have its 9 fields";
    if (p != end)
        return "line has more than 9 fields";
    if (n[0] != sizeof(FORMAT) - 1 || memcmp(f[0], FORMAT, n[0]) != 0)
        return "not a format 2 line";
    if (n[1] > SJWT_BOOT_ID_MAX)
        return "boot id is too long";
    for (i = 0; i < n[1]; i++)
        if (!((f[1][i] >= '0' && f[1][i] <= '9') || (f[1][i] >= 'a' && f[1][i] <= 'f')
              || f[1][i] == '-'))
            return "boot id is not [0-9a-f-]";
    if (number(f[2], n[2], 1, &rup) < 0 || number(f[3], n[3], 1, &eup) < 0
        || number(f[4], n[4], 0, &e->exp) < 0)
        return "a number field is malformed";
    if (n[5] != 1 || (f[5][0] != '0' && f[5][0] != '1'))
        return "export flag is not 0 or 1";
    e->export_env = f[5][0] - '0';
    if (n[6] > SJWT_KID_MAX)
        return "kid is too long";
    for (i = 0; i < n[6]; i++)
        if (!sjwt_is_kid_char((unsigned char) f[6][i]))
            return "kid has a character outside [A-Za-z0-9_-]";
    if (n[7] > SJWT_TOKEN_MAX)
        return "token is too long";
    for (i = 0; i < n[7]; i++) {
        if (!sjwt_is_token_char((unsigned char) f[7][i]))
            return "token has a character outside [A-Za-z0-9_.-]";
        dots += f[7][i] == '.';
    }
    if (dots != 2)
        return "token is not three parts";
    memcpy(e->kid, f[6], n[6]);
    memcpy(e->token, f[7], n[7]);
    /* The line keeps the refresh time as an uptime second; what is left of
     * the margin is the same against the epoch. */
    e->refresh = e->exp - SJWT_SAFETY - (eup - rup);
    if (e->refresh > e->exp)
        e->refresh = e->exp;
    return NULL;
}

const char *sjwt_entry_stale(const struct sjwt_entry *e, long long now, const char *kid,
                             const char *user)
{
    struct sjwt_claims c;

    if (e->exp - SJWT_SAFETY <= now)
        return "expired";
    if (kid == NULL || kid[0] == '\0' || strcmp(e->kid, kid) != 0)
        return "of another key";
    if (user == NULL)
        return "the caller's name is unknown";
    if (sjwt_peek(e->token, strlen(e->token), &c) != NULL || strcmp(c.sun, user) != 0)
        return "for another user";
    return NULL;
}

/*
 * Open dir (creating it 0700 first when asked) and check it is a directory
 * owned by uid with no group or other bits; return its descriptor, -2 when
 * it does not exist, or -1 with why filled in.
 */
static int open_dir(const char *dir, uid_t uid, int create, char *why, size_t whylen)
{
    struct stat st;
    int dfd;

    if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
        if (errno == ENOENT)
            say(why, whylen, "token cache \"%s\" cannot be created (its parent does not "
                "exist); ask an admin to install the tmpfiles.d entry for /run/slurmjwt", dir);
        else
            say(why, whylen, "token cache \"%s\" cannot be created (%s); log in again over "
                "ssh (pam_slurmjwt creates it), or set SLURMJWT_CACHE_DIR to a private "
                "directory", dir, strerror(errno));
        return -1;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == ENOENT)
            return -2;
        if (errno == ELOOP || errno == ENOTDIR)
            say(why, whylen, "token cache \"%s\" is a symlink or not a directory; remove "
                "it: rm \"%s\"", dir, dir);
        else if (errno == EACCES && lstat(dir, &st) == 0 && st.st_uid != uid)
            say(why, whylen, "token cache \"%s\" is owned by uid %lu, not by you (uid %lu); "
                "remove it or ask an admin to: rm -r \"%s\"", dir, (unsigned long) st.st_uid,
                (unsigned long) uid, dir);
        else
            say(why, whylen, "token cache \"%s\" cannot be opened (%s); check it", dir,
                strerror(errno));
        return -1;
    }
    if (fstat(dfd, &st) < 0 || st.st_uid != uid) {
        say(why, whylen, "token cache \"%s\" is owned by uid %lu, not by you (uid %lu); "
            "remove it or ask an admin to: rm -r \"%s\"", dir, (unsigned long) st.st_uid,
            (unsigned long) uid, dir);
        close(dfd);
        return -1;
    }
    if (st.st_mode & 077) {
        say(why, whylen, "token cache \"%s\" has mode %04o; run chmod 0700 \"%s\"", dir,
            (unsigned) (st.st_mode & 07777), dir);
        close(dfd);
        return -1;
    }
    return dfd;
}

int sjwt_cache_load(const char *dir, uid_t uid, struct sjwt_entry *e,
                    char *why, size_t whylen)
{
    char buf[SJWT_CACHE_FILE_MAX + 1];
    struct stat st;
    const char *bad;
    ssize_t n;
    int dfd, fd, rc = SJWT_CACHE_UNSAFE;

    dfd = open_dir(dir, uid, 0, why, whylen);
    if (dfd == -2) {
        say(why, whylen, "no cache directory");
        return SJWT_CACHE_NONE;
    }
    if (dfd < 0)
        return SJWT_CACHE_UNSAFE;
    fd = openat(dfd, "token", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            say(why, whylen, "no cached token");
            rc = SJWT_CACHE_NONE;
        } else if (errno == ELOOP)
            say(why, whylen, "token cache \"%s\" holds a symlink named token; remove it: "
                "rm \"%s/token\"", dir, dir);
        else
            say(why, whylen, "token cache \"%s\" holds a token file you cannot read (%s); "
                "run chmod 0600 \"%s/token\"", dir, strerror(errno), dir);
        close(dfd);
        return rc;
    }
    if (fstat(fd, &st) < 0 || st.st_uid != uid)
        say(why, whylen, "token cache \"%s/token\" is owned by uid %lu, not by you (uid %lu); "
            "remove it or ask an admin to: rm -r \"%s/token\"", dir,
            (unsigned long) st.st_uid, (unsigned long) uid, dir);
    else if (st.st_mode & 077)
        say(why, whylen, "token cache \"%s/token\" has mode %04o; run chmod 0600 "
            "\"%s/token\"", dir, (unsigned) (st.st_mode & 07777), dir);
    else if (!S_ISREG(st.st_mode))
        say(why, whylen, "token cache \"%s/token\" is not a regular file; remove it: "
            "rm \"%s/token\"", dir, dir);
    else {
        for (n = 0;;) {
            ssize_t got = read(fd, buf + n, sizeof(buf) - (size_t) n);

            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0 || (n += got) == (ssize_t) sizeof(buf))
                break;
        }
        if (n <= 0 || n > SJWT_CACHE_FILE_MAX || (bad = sjwt_cache_parse(buf, (size_t) n, e))) {
            say(why, whylen, "cached token is corrupt");
            rc = SJWT_CACHE_NONE;
        } else
            rc = SJWT_CACHE_OK;
    }
    close(fd);
    close(dfd);
    return rc;
}

/* Write text into a new temp file in dfd, fsync it, rename it to name. */
static int replace(int dfd, const char *name, const char *text, size_t len)
{
    char tmp[64];
    unsigned char rnd[4] = { 0 };
    ssize_t n;
    size_t done = 0;
    int fd, err;

    if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t) sizeof(rnd))
        return -1;
    snprintf(tmp, sizeof(tmp), ".%s.%ld.%02x%02x%02x%02x", name, (long) getpid(),
             rnd[0], rnd[1], rnd[2], rnd[3]);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    while (done < len) {
        n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t) n;
    }
    if (done != len || fsync(fd) < 0) {
        err = done != len ? ENOSPC : errno;
        close(fd);
        unlinkat(dfd, tmp, 0);
        errno = err;
        return -1;
    }
    close(fd);
    if (renameat(dfd, tmp, dfd, name) < 0) {
        err = errno;
        unlinkat(dfd, tmp, 0);
        errno = err;
        return -1;
    }
    return 0;
}

/* The first field of /proc/uptime and the boot id; -1 when unreadable. */
static int clocks(double *uptime, char boot_id[SJWT_BOOT_ID_MAX + 1])
{
    char buf[128];
    ssize_t n;
    char *end;

    n = slurp(AT_FDCWD, "/proc/uptime", buf, sizeof(buf) - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    *uptime = strtod(buf, &end);
    if (end == buf)
        return -1;
    n = slurp(AT_FDCWD, "/proc/sys/kernel/random/boot_id", buf, sizeof(buf) - 1);
    if (n < 2 || n > SJWT_BOOT_ID_MAX + 1 || buf[n - 1] != '\n')
        return -1;
    memcpy(boot_id, buf, (size_t) n - 1);
    boot_id[n - 1] = '\0';
    return 0;
}

int sjwt_cache_store(const char *dir, uid_t uid, const struct sjwt_entry *e,
                     char *why, size_t whylen)
{
    char line[LINE_MAX_BYTES], csh[LINE_MAX_BYTES + 32], boot_id[SJWT_BOOT_ID_MAX + 1];
    struct timespec ts;
    double uptime;
    int dfd, len, clen, fd;

    if (clocks(&uptime, boot_id) < 0 || clock_gettime(CLOCK_REALTIME, &ts) < 0) {
        say(why, whylen, "cannot read /proc/uptime or the boot id");
        return SJWT_CACHE_UNSAFE;
    }
    len = sjwt_cache_format(line, sizeof(line), e, (double) ts.tv_sec + ts.tv_nsec / 1e9,
                            uptime, boot_id);
    if (len < 0) {
        say(why, whylen, "cache line does not fit");
        return SJWT_CACHE_UNSAFE;
    }
    clen = snprintf(csh, sizeof(csh), "set _slurmjwt_c=(%.*s)\n", len - 1, line);
    dfd = open_dir(dir, uid, 1, why, whylen);
    if (dfd < 0) {
        if (dfd == -2)
            say(why, whylen, "token cache \"%s\" vanished while being created; try again", dir);
        return SJWT_CACHE_UNSAFE;
    }
    if (replace(dfd, "token", line, (size_t) len) < 0
        || replace(dfd, "token.csh", csh, (size_t) clen) < 0) {
        say(why, whylen, "cannot write token cache \"%s\": %s", dir, strerror(errno));
        close(dfd);
        return SJWT_CACHE_UNSAFE;
    }
    (void) unlinkat(dfd, SJWT_LATE_FILE, 0);   /* the helper answered */
    /* Only the csh shim's clock: a failure costs it a refresh, nothing more.
     * O_NONBLOCK: a FIFO planted there must not hold a login. */
    fd = openat(dfd, ".clock", O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    close(dfd);
    return SJWT_CACHE_OK;
}

/* True when dfd/name, in its own form (csh: "set _slurmjwt_c=(LINE)"), is a whole line for user. */
static int users_line(int dfd, const char *name, const char *user)
{
    static const char csh[] = "set _slurmjwt_c=(";
    char buf[SJWT_CACHE_FILE_MAX + 1];
    const char *line = buf;
    struct sjwt_entry e;
    struct sjwt_claims c;
    ssize_t n = slurp(dfd, name, buf, sizeof(buf));
    int ok;

    if (n > 0 && strcmp(name, "token.csh") == 0) {
        if ((size_t) n < sizeof(csh) + 2 || memcmp(buf, csh, sizeof(csh) - 1) != 0
            || memcmp(buf + n - 2, ")\n", 2) != 0) {
            n = -1;
        } else {
            buf[n - 2] = '\n';
            line = buf + sizeof(csh) - 1;
            n -= (ssize_t) sizeof(csh);
        }
    }
    ok = n > 0 && n <= SJWT_CACHE_FILE_MAX && sjwt_cache_parse(line, (size_t) n, &e) == NULL
         && sjwt_peek(e.token, strlen(e.token), &c) == NULL && strcmp(c.sun, user) == 0;
    explicit_bzero(buf, sizeof(buf));
    explicit_bzero(&e, sizeof(e));
    return ok;
}

int sjwt_cache_forget_others(const char *dir, uid_t uid, const char *user,
                             char *why, size_t whylen)
{
    static const char *const names[] = { "token", "token.csh" };
    size_t i;
    int dfd, rc = 0;

    dfd = open_dir(dir, uid, 0, why, whylen);
    if (dfd == -2)
        return 0;
    if (dfd < 0)
        return -1;
    /* What cannot be shown to be the user's goes: a torn or foreign file
     * is of no use to them, and the next grant writes both again. */
    for (i = 0; i < sizeof(names) / sizeof(names[0]) && rc >= 0; i++) {
        if (users_line(dfd, names[i], user))
            continue;
        if (unlinkat(dfd, names[i], 0) == 0)
            rc = 1;
        else if (errno != ENOENT) {
            say(why, whylen, "cannot remove \"%s/%s\": %s", dir, names[i], strerror(errno));
            rc = -1;
        }
    }
    close(dfd);
    return rc;
}

void sjwt_cache_note_late(const char *dir, uid_t uid, long long until)
{
    char why[8], text[32];
    int dfd = open_dir(dir, uid, 0, why, sizeof(why)), n;

    if (dfd < 0)
        return;
    n = snprintf(text, sizeof(text), "%lld\n", until);
    (void) replace(dfd, SJWT_LATE_FILE, text, (size_t) n);
    close(dfd);
}

long long sjwt_cache_late_until(const char *dir, uid_t uid, long long now)
{
    char why[8], buf[24];
    long long until;
    ssize_t n;
    int dfd = open_dir(dir, uid, 0, why, sizeof(why));

    if (dfd < 0)
        return 0;
    n = slurp(dfd, SJWT_LATE_FILE, buf, sizeof(buf));
    close(dfd);
    if (n < 2 || buf[n - 1] != '\n' || number(buf, (size_t) n - 1, 0, &until) < 0)
        return 0;
    return until > now && until <= now + SJWT_LATE_BACKOFF ? until : 0;
}
