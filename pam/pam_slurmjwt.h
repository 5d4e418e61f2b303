/*
 * pam_slurmjwt.h - what the module's own files share: its options, the
 * per-call session state, logging, and the cache hand-off. Not installed.
 */
#ifndef SLURMJWT_PAM_SLURMJWT_H
#define SLURMJWT_PAM_SLURMJWT_H

#include <pwd.h>
#include <stdbool.h>
#include <stddef.h>

#include <security/pam_modules.h>

#define LOG_LINE_MAX 512

/* Parsed module arguments; strings point into argv or at literals. */
struct options {
    bool debug;
    bool noexport;
    long long minuid;
    long long timeout_ms;
    const char *socket;         /* points into argv or at a literal */
    const char *refresh;        /* "none" disables the cache hand-off */
};

/* What a session carries between its steps; one per open_session call. */
struct session {
    pam_handle_t *pamh;
    const struct options *opt;
    const char *user;
};

/* Log one line with "(user X)" appended; debug lines only when asked. */
__attribute__((format(printf, 3, 4)))
void say(const struct session *s, int prio, const char *fmt, ...);

/*
 * Given the user and the helper's validated OK line (len bytes, newline
 * included), start the refresh program as the user with the line on its
 * stdin. Returns when it has exec'd or failed; every failure is logged.
 */
void hand_off(const struct session *s, const struct passwd *pw,
              const char *line, size_t len);

#endif /* SLURMJWT_PAM_SLURMJWT_H */
