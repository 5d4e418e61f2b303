/*
 * cache.h - the per-user token cache, format 2 (docs/internals.md), in C:
 * choosing the directory, reading with every check, writing atomically.
 * The same bytes as pam_slurmjwt/cache.py; tests write with one and read
 * with the other.
 *
 * Every function runs with the caller's identity and never changes it: the
 * PAM module calls the writer in a child that has become the user.
 */
#ifndef SLURMJWT_CACHE_H
#define SLURMJWT_CACHE_H

#include <stddef.h>
#include <sys/types.h>

#include "protocol.h"

#define SJWT_CACHE_FILE_MAX 16384       /* readers read at most this much */
#define SJWT_CACHE_PATH_MAX 4096
#define SJWT_SAFETY 5                   /* seconds before exp a token counts as expired */
#define SJWT_FALLBACK_BASE "/run/slurmjwt/users"
#define SJWT_BOOT_ID_MAX 64
#define SJWT_LATE_FILE ".helper-late"   /* the helper did not answer: not before this */
#define SJWT_LATE_BACKOFF 30            /* seconds no client asks a helper that timed out */

/* One cached token. */
struct sjwt_entry {
    long long exp;                      /* epoch seconds */
    long long refresh;                  /* epoch seconds: due for a new one from here */
    int export_env;                     /* 0 or 1: the helper's export policy */
    char kid[SJWT_KID_MAX + 1];         /* id of the key that signed it */
    char token[SJWT_TOKEN_MAX + 1];
};

/* Outcomes of sjwt_cache_load and sjwt_cache_store. */
enum sjwt_cache_rc {
    SJWT_CACHE_OK = 0,
    SJWT_CACHE_NONE = 1,        /* load: no directory, no token file, or a corrupt one */
    SJWT_CACHE_UNSAFE = -1,     /* wrong owner or mode, a symlink, cannot be made */
};

/*
 * Given the caller's uid and the values of SLURMJWT_CACHE_DIR and
 * XDG_RUNTIME_DIR (either may be NULL), write the cache directory into buf
 * (size bytes) and return 0, or -1 when it does not fit. Root takes neither
 * the override nor an XDG_RUNTIME_DIR it does not own.
 */
int sjwt_cache_dir(char *buf, size_t size, uid_t uid, const char *override,
                   const char *xdg);

/*
 * Given the bytes of a key id file (len of them), write the id into kid and
 * return 0 when they are 1 to SJWT_KID_MAX characters [A-Za-z0-9_-] and a
 * newline, nothing else; otherwise return -1.
 */
int sjwt_parse_key_id(const char *buf, size_t len, char kid[SJWT_KID_MAX + 1]);

/*
 * Given the directory the helper publishes its key id in, read `id` into
 * kid and return 0, or return -1 when it is missing or malformed.
 */
int sjwt_read_key_id(const char *keydir, char kid[SJWT_KID_MAX + 1]);

/*
 * Given an entry, the time (epoch), the uptime and the boot id, write the
 * `token` line into buf and return its length, or -1 when it does not fit.
 * The `token.csh` line is "set _slurmjwt_c=(" + the line without its
 * newline + ")\n".
 */
int sjwt_cache_format(char *buf, size_t size, const struct sjwt_entry *e,
                      double now, double uptime, const char *boot_id);

/*
 * Given the text of a `token` file (len bytes), fill *e and return NULL,
 * or return a short static reason when it is not one whole format 2 line.
 */
const char *sjwt_cache_parse(const char *buf, size_t len, struct sjwt_entry *e);

/*
 * Given an entry read from the cache, the time (epoch), the id of the key in
 * use ("" when unknown) and the caller's user name (NULL when it could not
 * be looked up), return NULL when the entry may be used, or why it is stale:
 * expired, of another key, or its token's `sun` is not the caller's (a uid
 * given to someone else within one boot; a name unknown is never a match).
 * docs/internals.md, "Per-user token cache, format 2".
 */
const char *sjwt_entry_stale(const struct sjwt_entry *e, long long now, const char *kid,
                             const char *user);

/*
 * Read dir/token as uid's cache: the directory and the file must be owned
 * by uid, have no group or other bits, and not be symlinks. Returns OK with
 * *e filled, NONE (why says which), or UNSAFE (why says what and the fix).
 * Expiry and key are the caller's to judge.
 */
int sjwt_cache_load(const char *dir, uid_t uid, struct sjwt_entry *e,
                    char *why, size_t whylen);

/*
 * Write *e into dir (created 0700 when missing) as `token` and `token.csh`,
 * each through a new temp file, fsync and rename, and touch `.clock`.
 * Returns OK or UNSAFE with why filled in.
 */
int sjwt_cache_store(const char *dir, uid_t uid, const struct sjwt_entry *e,
                     char *why, size_t whylen);

/*
 * Given uid's cache directory and the user's name, remove `token` and
 * `token.csh` from it, each unless it is a whole line whose token's `sun` is
 * that name: a uid given to someone else within one boot must not keep the
 * previous owner's live token readable (the new owner owns the directory).
 * Run as the user. Return 1 when something was removed, 0 when nothing had
 * to go (or there is no directory), -1 with why filled in when the
 * directory is unsafe or a file cannot be removed.
 */
int sjwt_cache_forget_others(const char *dir, uid_t uid, const char *user,
                             char *why, size_t whylen);

/*
 * After the helper did not answer within its timeout: write `until` (epoch
 * seconds, at most SJWT_LATE_BACKOFF ahead) into dir's SJWT_LATE_FILE, so
 * that the next commands of a loop do not each wait the whole timeout
 * again. Best effort, as the user; nothing when dir does not exist or is
 * unsafe. A stored token removes the file.
 */
void sjwt_cache_note_late(const char *dir, uid_t uid, long long until);

/*
 * The epoch second before which the helper is not to be asked, from dir's
 * SJWT_LATE_FILE; 0 when there is none, it is unsafe, malformed, past, or
 * further than SJWT_LATE_BACKOFF ahead of now (a clock set back).
 */
long long sjwt_cache_late_until(const char *dir, uid_t uid, long long now);

#endif /* SLURMJWT_CACHE_H */
