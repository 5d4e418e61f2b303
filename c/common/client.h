/*
 * client.h - one exchange with slurmjwt-helper: connect, check who answers
 * (SO_PEERCRED: root, or the caller itself), send one request line, read
 * one response line; everything within one deadline.
 */
#ifndef SLURMJWT_CLIENT_H
#define SLURMJWT_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

/* The longest any client waits for the helper: HelperTimeout (at most 60 s,
 * pam_slurmjwt/config.py) and the PAM module's timeout= alike. */
#define SJWT_TIMEOUT_MAX_MS 60000

/* Milliseconds of CLOCK_MONOTONIC. */
long long sjwt_now_ms(void);

/*
 * Given a deadline (sjwt_now_ms() scale, any value), return what poll()
 * should wait now: 0 when it has passed, else what is left, at most
 * SJWT_TIMEOUT_MAX_MS (call again when that runs out).
 */
int sjwt_poll_ms(long long deadline);

/*
 * Given the helper's socket path, put in buf the path of `name` in the same
 * directory; 0, or -1 when it does not fit or the path has no directory.
 */
int sjwt_beside(char *buf, size_t size, const char *socket_path, const char *name);

/*
 * Given the helper's socket path, put in buf the directory beside it where
 * the helper publishes its key id (docs/internals.md, "Key id"), whose
 * owner is the helper's user; 0, or -1 when it does not fit or the path
 * has no directory.
 */
int sjwt_key_dir(char *buf, size_t size, const char *socket_path);

/*
 * Given the socket path, a deadline (sjwt_now_ms() scale), and a request of
 * reqlen bytes, read one response line into resp (at most SJWT_RESPONSE_MAX
 * bytes) and return its length; or return -1 with why filled in (the
 * helper is absent, slow, served by another uid, or sent no line).
 * *status is SJWT_ASK_MISSING when the socket does not exist (ENOENT),
 * SJWT_ASK_SILENT when the helper accepted the connection and the deadline
 * passed before its answer (a helper that hangs, not one that is busy), 0
 * otherwise.
 */
#define SJWT_ASK_MISSING 1
#define SJWT_ASK_SILENT 2
ssize_t sjwt_ask(const char *path, long long deadline, const char *req, size_t reqlen,
                 char *resp, char *why, size_t whylen, int *status);

#endif /* SLURMJWT_CLIENT_H */
