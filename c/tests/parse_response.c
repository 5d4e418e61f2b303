/*
 * parse_response.c - a command-line door to ../common/protocol.c for the
 * Python tests (tests/unit/test_c_parser.py); built with ASan/UBSan by
 * `make c-harness`.
 *
 *   parse_response              parse stdin (at most 16384 bytes) as one response
 *   parse_response --batch      stdin holds records: 4 hex digits of length, then
 *                               that many bytes; one result line per record
 *   parse_response --request U  print the request for user U, or "BAD"
 *
 * A result line is "OK <exp> <refresh> <export> <kid> <token> <fp>", "ERR <code> <message>"
 * or "BAD <reason>". Test tokens only: the module itself never prints one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/protocol.h"

#define INPUT_MAX 16384

static void report(const char *buf, size_t len)
{
    struct sjwt_response r;
    const char *bad = sjwt_parse_response(buf, len, &r);

    if (bad != NULL)
        printf("BAD %s\n", bad);
    else if (r.kind == SJWT_RESP_OK)
        printf("OK %lld %lld %d %.*s %.*s %016llx\n", r.exp, r.refresh, r.export_env,
               (int) r.kid_len, r.kid, (int) r.token_len, r.token,
               (unsigned long long) sjwt_fingerprint(r.token, r.token_len));
    else
        printf("ERR %s %.*s\n", r.code, (int) r.message_len, r.message);
}

static int batch(void)
{
    static char buf[INPUT_MAX];
    char hex[5] = { 0 };
    unsigned long len;
    char *end;

    while (fread(hex, 1, 4, stdin) == 4) {
        len = strtoul(hex, &end, 16);
        if (*end != '\0' || len > sizeof(buf) || fread(buf, 1, len, stdin) != len)
            return 2;
        report(buf, len);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static char buf[INPUT_MAX];
    char req[SJWT_REQUEST_MAX + 1];
    size_t len;

    if (argc == 3 && strcmp(argv[1], "--request") == 0) {
        if (sjwt_format_request(req, sizeof(req), argv[2]) < 0)
            printf("BAD\n");
        else
            fputs(req, stdout);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--batch") == 0)
        return batch();
    if (argc != 1) {
        fprintf(stderr, "usage: parse_response [--batch | --request USER]\n");
        return 2;
    }
    len = fread(buf, 1, sizeof(buf), stdin);
    report(buf, len);
    return 0;
}
