/*
 * protocol.h - the helper wire protocol, version 2 (docs/internals.md), as
 * the C front ends (pam_slurmjwt.so, slurmjwt-wrap) speak it.
 *
 * Pure functions only: no I/O, no allocation, no global state, so the parser
 * can be unit-tested and fuzzed on its own. docs/internals.md is the
 * contract; this file must follow it byte for byte.
 */
#ifndef SLURMJWT_PROTOCOL_H
#define SLURMJWT_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#define SJWT_REQUEST_MAX 256    /* bytes, newline included */
#define SJWT_RESPONSE_MAX 8192  /* bytes, newline included */
#define SJWT_TOKEN_MAX 7168     /* characters of a token */
#define SJWT_KID_MAX 64         /* characters of a key id */
#define SJWT_CODE_MAX 32        /* longest ERR code we accept */

enum sjwt_kind {
    SJWT_RESP_OK,
    SJWT_RESP_ERR,
};

/*
 * A parsed response. token, kid and message point into the buffer that was
 * parsed (not NUL-terminated), so they live exactly as long as it does.
 */
struct sjwt_response {
    enum sjwt_kind kind;
    long long exp;                  /* OK: epoch seconds, > 0 */
    long long refresh;              /* OK: epoch seconds, 0 < refresh <= exp */
    int export_env;                 /* OK: 0 or 1 */
    const char *kid;                /* OK: [A-Za-z0-9_-]{1,64} */
    size_t kid_len;
    const char *token;              /* OK: [A-Za-z0-9_.-]{1,7168} */
    size_t token_len;
    char code[SJWT_CODE_MAX + 1];   /* ERR: [a-z-]+, NUL-terminated */
    const char *message;            /* ERR: printable ASCII, never empty */
    size_t message_len;
};

/*
 * Given the bytes a helper sent (len of them, which need not be
 * NUL-terminated), fill *out and return NULL when they are exactly one valid
 * OK or ERR line; otherwise return a short static description of the first
 * thing wrong (for a log line) and leave *out unspecified.
 */
const char *sjwt_parse_response(const char *buf, size_t len,
                                struct sjwt_response *out);

/*
 * Given a user name, or NULL for "the caller itself", write
 * "SLURMJWT/2 TOKEN <user> -\n" into buf (size bytes) and return its
 * length, or return -1 when the name could break the line (empty, spaces,
 * control or non-ASCII bytes) or the request would be longer than
 * SJWT_REQUEST_MAX or size.
 */
int sjwt_format_request(char *buf, size_t size, const char *user);

/* True (1) when c may appear in a key id: [A-Za-z0-9_-]. */
int sjwt_is_kid_char(unsigned char c);

/* True (1) when c may appear in a token: [A-Za-z0-9_.-]. */
int sjwt_is_token_char(unsigned char c);

/*
 * Given a token, return the FNV-1a 64-bit hash of its signature part (after
 * the last '.', or all of it if there is none): a fingerprint that lets logs
 * tell tokens apart without revealing them; slurmjwt-helper logs the same.
 */
uint64_t sjwt_fingerprint(const char *data, size_t len);

#endif /* SLURMJWT_PROTOCOL_H */
