/*
 * fuzz_parsers.c - libFuzzer target for everything that reads untrusted
 * bytes in C (`make c-fuzz`): the helper's answer (protocol.c), a token
 * (token.c), a cache line and a key id file (cache.c).
 *
 * Beyond "no crash": whatever the response parser accepts must be exactly
 * the canonical line rebuilt from what it returned, so no byte it did not
 * check can slip into a token or a log line; a token's sun and kid hold only
 * what the contract allows; a cache line it accepts formats back to itself;
 * a key id it accepts is the file without its newline, and fits its buffer;
 * every request it builds is one line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cache.h"
#include "../common/protocol.h"
#include "../common/token.h"

static void check_response(const char *data, size_t size)
{
    static char line[SJWT_RESPONSE_MAX + 64];
    struct sjwt_response r;
    int n;

    if (sjwt_parse_response(data, size, &r) != NULL)
        return;
    if (r.kind == SJWT_RESP_OK)
        n = snprintf(line, sizeof(line), "SLURMJWT/2 OK %lld %lld %d %.*s %.*s\n", r.exp,
                     r.refresh, r.export_env, (int) r.kid_len, r.kid, (int) r.token_len,
                     r.token);
    else
        n = snprintf(line, sizeof(line), "SLURMJWT/2 ERR %s %.*s\n", r.code,
                     (int) r.message_len, r.message);
    if (n < 0 || (size_t) n != size || memcmp(line, data, size) != 0)
        abort();
    (void) sjwt_fingerprint(r.token, r.token_len);
}

static void check_token(const char *data, size_t size)
{
    struct sjwt_claims c;
    size_t i;

    if (sjwt_peek(data, size, &c) != NULL)
        return;
    if (c.sun[0] == '\0' || strlen(c.sun) > SJWT_NAME_MAX || c.exp < 0)
        abort();
    for (i = 0; c.kid[i] != '\0'; i++)
        if (!sjwt_is_kid_char((unsigned char) c.kid[i]))
            abort();
    for (i = 0; c.sun[i] != '\0'; i++)
        if ((unsigned char) c.sun[i] < 0x20 || c.sun[i] == '"' || c.sun[i] == '\\')
            abort();
}

static void check_cache_line(const char *data, size_t size)
{
    static struct sjwt_entry e;
    static char tail[SJWT_TOKEN_MAX + SJWT_KID_MAX + 16];
    int n;

    if (sjwt_cache_parse(data, size, &e) != NULL)
        return;
    /* What it returns is what the line ends with, byte for byte: no byte it
     * did not check reaches a token or a kid. */
    n = snprintf(tail, sizeof(tail), " %d %s %s end\n", e.export_env, e.kid, e.token);
    if (e.refresh > e.exp || strncmp(data, "slurmjwt2 ", 10) != 0 || n < 0
        || (size_t) n > size || memcmp(data + size - (size_t) n, tail, (size_t) n) != 0)
        abort();
}

static void check_key_id(const char *data, size_t size)
{
    /* Exactly the size of the callers' buffers: ASan sees any write past it. */
    char *kid = malloc(SJWT_KID_MAX + 1);

    if (kid == NULL)
        abort();
    if (sjwt_parse_key_id(data, size, kid) == 0
        && (strlen(kid) + 1 != size || memcmp(kid, data, size - 1) != 0))
        abort();
    free(kid);
}

static void check_request(const char *data, size_t size)
{
    char user[SJWT_REQUEST_MAX + 8], req[SJWT_REQUEST_MAX + 1];
    size_t len = size < sizeof(user) - 1 ? size : sizeof(user) - 1;
    int n;

    memcpy(user, data, len);
    user[len] = '\0';
    n = sjwt_format_request(req, sizeof(req), user);
    if (n < 0)
        return;
    if (n > SJWT_REQUEST_MAX || (size_t) n != strlen(req)
        || memchr(req, '\n', (size_t) n) != req + n - 1
        || memchr(req, ' ', 17 + strlen(user)) != req + 10)
        abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    check_response((const char *) data, size);
    check_token((const char *) data, size);
    check_cache_line((const char *) data, size);
    check_key_id((const char *) data, size);
    check_request((const char *) data, size);
    return 0;
}
