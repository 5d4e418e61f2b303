/*
 * handoff.h - put a token into the user's cache with the user's identity,
 * from inside sshd: a child that becomes the user for good writes it with
 * cache.c. Reports back instead of logging, so that it never calls into the
 * module that calls it.
 */
#ifndef SLURMJWT_HANDOFF_H
#define SLURMJWT_HANDOFF_H

#include <pwd.h>
#include <stddef.h>

#include "../common/cache.h"

/*
 * Given the user, the session's XDG_RUNTIME_DIR (or NULL), an entry and a
 * deadline (sjwt_now_ms() scale), store the entry in the user's cache
 * (docs/internals.md) and return 0; or return -1 with why filled in. The
 * caller waits no longer than the deadline; a child still busy then is
 * killed, and waited for 50 ms more at most (one stuck in a file system
 * that never answers is left behind). Without XDG_RUNTIME_DIR, root first makes the user's entry in the
 * root-only fallback directory.
 */
int handoff_store(const struct passwd *pw, const char *xdg, const struct sjwt_entry *e,
                  long long deadline, char *why, size_t whylen);

/*
 * Given the user, the session's XDG_RUNTIME_DIR (or NULL) and a deadline,
 * when the user's cache is the fallback directory, remove from it, as the
 * user, what is not the user's (sjwt_cache_forget_others): for a login that
 * gets no token, so that a uid given to someone else within one boot does
 * not keep the previous owner's token readable. Return 1 when files were
 * removed, 0 when none had to go (or the cache is elsewhere), -1 with why.
 * Bounded as handoff_store; nothing is created.
 */
int handoff_forget_others(const struct passwd *pw, const char *xdg, long long deadline,
                          char *why, size_t whylen);

#endif /* SLURMJWT_HANDOFF_H */
