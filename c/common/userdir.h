/*
 * userdir.h - the per-user cache directories under SJWT_FALLBACK_BASE, where
 * a token is kept outside a session (no XDG_RUNTIME_DIR: cron, sudo, a
 * service, env -i). Their parent is root's alone (0711), so no user can
 * squat another's entry: only root makes one, and gives it to its user. Root
 * does so at a login through pam_slurmjwt.so, and slurmjwt-userdir (run by
 * systemd for each connection to its socket) for a user who asks, the user
 * named by the kernel (SO_PEERCRED), never by what it sends.
 */
#ifndef SLURMJWT_USERDIR_H
#define SLURMJWT_USERDIR_H

#include <stddef.h>
#include <sys/types.h>

#define SJWT_USERDIR_SOCKET "userdir.sock"     /* beside the helper's socket */
#define SJWT_USERDIR_TIMEOUT_MS 2000           /* what a client waits for it at most */

/*
 * As root: make SJWT_FALLBACK_BASE/UID (0700) if missing and give it to
 * uid:gid when root still owns it (made now, or by a login that crashed).
 * An entry another uid owns is left alone: its readers refuse it. Every step
 * is relative to a descriptor of the root-owned parent and follows no link.
 * 0, or -1 with why filled in.
 */
int sjwt_userdir_make(uid_t uid, gid_t gid, char *why, size_t whylen);

/*
 * As the user, whose SJWT_FALLBACK_BASE/UID does not exist: ask
 * slurmjwt-userdir (its socket is beside helper_socket) to make it, within
 * SJWT_USERDIR_TIMEOUT_MS; 0 once it says it did, or -1 with why filled in.
 */
int sjwt_userdir_ask(const char *helper_socket, char *why, size_t whylen);

#endif /* SLURMJWT_USERDIR_H */
