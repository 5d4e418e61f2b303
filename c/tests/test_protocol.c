/*
 * test_protocol.c - C unit tests of the wire format (../common/protocol.c),
 * run by `make c-test` under ASan/UBSan and valgrind. Each case names the
 * rule of docs/internals.md it checks; the last line is "N passed, N failed".
 */
#include <stdio.h>
#include <string.h>

#include "../common/protocol.h"
#include "check.h"

/* Parse a string (its strlen, so no NULs) and say whether it was refused. */
static int refused(const char *line)
{
    struct sjwt_response r;

    return sjwt_parse_response(line, strlen(line), &r) != NULL;
}

static void test_ok_line(void)
{
    const char *line = "SLURMJWT/2 OK 1700000000 1699999400 1 kid-1_X aaa.bbb-_.ccc\n";
    struct sjwt_response r;
    const char *bad = sjwt_parse_response(line, strlen(line), &r);

    check(bad == NULL && r.kind == SJWT_RESP_OK && r.exp == 1700000000
          && r.refresh == 1699999400 && r.export_env == 1 && r.kid_len == 7
          && memcmp(r.kid, "kid-1_X", 7) == 0 && r.token_len == 13
          && memcmp(r.token, "aaa.bbb-_.ccc", 13) == 0,
          "an OK line gives exp, refresh, export, kid and token");
    line = "SLURMJWT/2 OK 1 1 0 - x\n";
    bad = sjwt_parse_response(line, strlen(line), &r);
    check(bad == NULL && r.export_env == 0 && r.exp == 1 && r.kid_len == 1,
          "export 0 is read as 0; the scontrol kid '-' is a kid");
}

static void test_err_line(void)
{
    const char *line = "SLURMJWT/2 ERR denied root may not have a token.\n";
    struct sjwt_response r;
    const char *bad = sjwt_parse_response(line, strlen(line), &r);

    check(bad == NULL && r.kind == SJWT_RESP_ERR && strcmp(r.code, "denied") == 0
          && r.message_len == strlen("root may not have a token.")
          && memcmp(r.message, "root may not have a token.", r.message_len) == 0,
          "an ERR line gives code and message");
    check(!refused("SLURMJWT/2 ERR no-user no such user\n"), "a code with a dash is accepted");
}

static void test_refusals(void)
{
    static const char *const bad[] = {
        "", "\n", "SLURMJWT/2 OK 1700000000 1699999400 1 k tok", /* no newline */
        "SLURMJWT/2 OK 1700000000 1699999400 1 k tok\nX",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k tok\n\n",
        "SLURMJWT/1 OK 1700000000 1 tok\n",                     /* another version */
        "slurmjwt/2 OK 1700000000 1699999400 1 k tok\n",
        "SLURMJWT/2  OK 1700000000 1699999400 1 k tok\n",
        "SLURMJWT/2 ok 1700000000 1699999400 1 k tok\n",
        "SLURMJWT/2 PONG 0.1.0\n", "SLURMJWT/2 OK\n", "SLURMJWT/2 OK \n",
        "SLURMJWT/2 OK 1700000000\n", "SLURMJWT/2 OK 1700000000 1699999400 1\n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k\n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k \n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 tok\n",          /* no kid */
        "SLURMJWT/2 OK 1700000000 1800000000 1 k tok\n",        /* refresh after exp */
        "SLURMJWT/2 OK 1700000000 0 1 k tok\n",
        "SLURMJWT/2 OK 1700000000 1699999400 2 k tok\n",
        "SLURMJWT/2 OK 1700000000 1699999400 10 k tok\n",
        "SLURMJWT/2 OK -1700000000 1699999400 1 k tok\n",
        "SLURMJWT/2 OK +1700000000 1699999400 1 k tok\n", "SLURMJWT/2 OK 0 0 1 k tok\n",
        "SLURMJWT/2 OK 01700000000 1699999400 1 k tok\n",
        "SLURMJWT/2 OK 17e8 1699999400 1 k tok\n",
        "SLURMJWT/2 OK 1234567890123456789 1 1 k tok\n",
        "SLURMJWT/2 OK 1700000000  1699999400 1 k tok\n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k tok \n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k to k\n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k tok=\n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k tok;rm\n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k.x tok\n",      /* kid with a dot */
        "SLURMJWT/2 OK 1700000000 1699999400 1 k$(id) tok\n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k t\tk\n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k tok\r\n",
        "SLURMJWT/2 OK 1700000000 1699999400 1 k t\xc3\xa9k\n",
        "SLURMJWT/2 ERR\n", "SLURMJWT/2 ERR denied\n", "SLURMJWT/2 ERR denied \n",
        "SLURMJWT/2 ERR Denied no\n", "SLURMJWT/2 ERR den_ied no\n",
        "SLURMJWT/2 ERR denied bell\a\n",
        "SLURMJWT/2 ERR aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa too long a code\n",
        "SLURMJWT/2 \n", "SLURMJWT/2\n", " SLURMJWT/2 OK 1700000000 1699999400 1 k tok\n",
    };
    size_t i;
    char name[200];

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(name, sizeof(name), "refused: case %zu", i);
        check(refused(bad[i]), name);
    }
}

static void test_another_version_says_so(void)
{
    struct sjwt_response r;
    const char *line = "SLURMJWT/1 OK 1700000000 1 tok\n";
    const char *bad = sjwt_parse_response(line, strlen(line), &r);

    check(bad != NULL && strstr(bad, "restart slurmjwt-helper") != NULL,
          "an answer in another version says to restart the helper");
}

static void test_sizes(void)
{
    static char buf[SJWT_RESPONSE_MAX + 2], kid[SJWT_KID_MAX + 2];
    struct sjwt_response r;
    const char *head = "SLURMJWT/2 OK 1700000000 1699999400 1 k ";
    size_t hlen = strlen(head), tlen = SJWT_TOKEN_MAX;
    char line[SJWT_KID_MAX + 64];

    memcpy(buf, head, hlen);
    memset(buf + hlen, 'a', tlen);
    buf[hlen + tlen] = '\n';
    check(sjwt_parse_response(buf, hlen + tlen + 1, &r) == NULL && r.token_len == tlen,
          "a token of 7168 characters is accepted");
    buf[hlen + tlen] = 'a';
    buf[hlen + tlen + 1] = '\n';
    check(sjwt_parse_response(buf, hlen + tlen + 2, &r) != NULL,
          "a token of 7169 characters is refused");
    memset(buf + hlen, 'a', SJWT_RESPONSE_MAX - hlen);
    buf[SJWT_RESPONSE_MAX] = '\n';
    check(sjwt_parse_response(buf, SJWT_RESPONSE_MAX + 1, &r) != NULL,
          "a line of 8193 bytes is refused");
    check(sjwt_parse_response("SLURMJWT/2 OK 1 1 1 k a\0b\n", 26, &r) != NULL,
          "a NUL byte is refused");
    memset(kid, 'k', SJWT_KID_MAX);
    kid[SJWT_KID_MAX] = '\0';
    snprintf(line, sizeof(line), "SLURMJWT/2 OK 2 1 1 %s t\n", kid);
    check(!refused(line), "a kid of 64 characters is accepted");
    kid[SJWT_KID_MAX] = 'k';
    kid[SJWT_KID_MAX + 1] = '\0';
    snprintf(line, sizeof(line), "SLURMJWT/2 OK 2 1 1 %s t\n", kid);
    check(refused(line), "a kid of 65 characters is refused");
}

static void test_request(void)
{
    char buf[SJWT_REQUEST_MAX + 1], user[300];
    int n = sjwt_format_request(buf, sizeof(buf), "alice");

    check(n == 25 && strcmp(buf, "SLURMJWT/2 TOKEN alice -\n") == 0,
          "a request names the user and asks for the default lifespan");
    n = sjwt_format_request(buf, sizeof(buf), NULL);
    check(n == 21 && strcmp(buf, "SLURMJWT/2 TOKEN - -\n") == 0,
          "a request for the caller itself names '-'");
    check(sjwt_format_request(buf, sizeof(buf), "") < 0, "an empty name is refused");
    check(sjwt_format_request(buf, sizeof(buf), "a b") < 0, "a space is refused");
    check(sjwt_format_request(buf, sizeof(buf), "a\nPING") < 0, "a newline is refused");
    check(sjwt_format_request(buf, sizeof(buf), "\xc3\xa9") < 0, "non-ASCII is refused");
    memset(user, 'u', sizeof(user));
    user[237] = '\0';           /* 17 + 237 + 3 = 257 bytes: too long */
    check(sjwt_format_request(buf, sizeof(buf), user) < 0, "a request over 256 bytes is refused");
    user[236] = '\0';           /* exactly 256 */
    check(sjwt_format_request(buf, sizeof(buf), user) == 256, "a request of 256 bytes is made");
    check(sjwt_format_request(buf, 10, "alice") < 0, "a short buffer is refused");
}

static void test_fingerprint(void)
{
    check(sjwt_fingerprint("", 0) == 0xcbf29ce484222325ULL, "FNV-1a of nothing is the offset basis");
    check(sjwt_fingerprint("a", 1) == 0xaf63dc4c8601ec8cULL, "FNV-1a of \"a\" matches the reference");
}

int main(void)
{
    test_ok_line();
    test_err_line();
    test_refusals();
    test_another_version_says_so();
    test_sizes();
    test_request();
    test_fingerprint();
    return report();
}
