/*
 * token.h - what a token says, read without verifying it: the user (`sun`),
 * the expiry (`exp`) and the key id (`kid` in the header). Only for checks
 * before a token is placed anywhere (the PAM module: is this the PAM user's?
 * the wrappers: may an inherited SLURM_JWT stay?); slurmctld verifies.
 *
 * Pure functions: no I/O, no allocation, bounded stack; fuzzed.
 */
#ifndef SLURMJWT_TOKEN_H
#define SLURMJWT_TOKEN_H

#include <stddef.h>

#include "protocol.h"

#define SJWT_NAME_MAX 64

struct sjwt_claims {
    char sun[SJWT_NAME_MAX + 1];    /* the user name, NUL-terminated */
    long long exp;                  /* epoch seconds */
    char kid[SJWT_KID_MAX + 1];     /* header kid, or "-" when it has none */
};

/*
 * Given a token (len bytes), fill *out and return NULL when it is three
 * base64url parts whose header and payload are JSON objects, the payload
 * with a string `sun` (plain, at most 64 bytes) and an integer `exp`, the
 * header with no `kid` or a plain one; otherwise return a short static
 * reason.
 */
const char *sjwt_peek(const char *token, size_t len, struct sjwt_claims *out);

#endif /* SLURMJWT_TOKEN_H */
