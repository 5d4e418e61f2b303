/*
 * fuzz_protocol.c - libFuzzer target for protocol.c (`make pam-fuzz`).
 *
 * Beyond "no crash": whatever the parser accepts must be exactly the canonical
 * line rebuilt from what it returned, so no byte it did not check can slip
 * into a token or a log line; and every request it builds must be one line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static void check_response(const char *data, size_t size)
{
    struct sjwt_response r;
    char line[SJWT_RESPONSE_MAX + 64];
    int n;

    if (sjwt_parse_response(data, size, &r) != NULL)
        return;
    if (r.kind == SJWT_RESP_OK)
        n = snprintf(line, sizeof(line), "SLURMJWT/1 OK %lld %d %.*s\n", r.exp,
                     r.export_env, (int) r.token_len, r.token);
    else
        n = snprintf(line, sizeof(line), "SLURMJWT/1 ERR %s %.*s\n", r.code,
                     (int) r.message_len, r.message);
    if (n < 0 || (size_t) n != size || memcmp(line, data, size) != 0)
        abort();
    (void) sjwt_fingerprint(r.token, r.token_len);
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
    check_request((const char *) data, size);
    return 0;
}
