/*
 * test_protocol.c - C unit tests of the wire format (protocol.c), run by
 * `make pam-test` under ASan/UBSan and valgrind. Each case names the rule of
 * docs/internals.md it checks; the last line is "N passed, N failed".
 */
#include <stdio.h>
#include <string.h>

#include "protocol.h"

static int passed, failed;

static void check(int ok, const char *name)
{
    if (ok)
        passed++;
    else
        failed++;
    printf("%s - %s\n", ok ? "ok" : "not ok", name);
}

/* Parse a string (its strlen, so no NULs) and say whether it was refused. */
static int refused(const char *line)
{
    struct sjwt_response r;

    return sjwt_parse_response(line, strlen(line), &r) != NULL;
}

static void test_ok_line(void)
{
    const char *line = "SLURMJWT/1 OK 1700000000 1 aaa.bbb-_.ccc\n";
    struct sjwt_response r;
    const char *bad = sjwt_parse_response(line, strlen(line), &r);

    check(bad == NULL && r.kind == SJWT_RESP_OK && r.exp == 1700000000
          && r.export_env == 1 && r.token_len == 13
          && memcmp(r.token, "aaa.bbb-_.ccc", 13) == 0,
          "an OK line gives exp, export and token");
    line = "SLURMJWT/1 OK 1 0 x\n";
    bad = sjwt_parse_response(line, strlen(line), &r);
    check(bad == NULL && r.export_env == 0 && r.exp == 1,
          "export 0 is read as 0");
}

static void test_err_line(void)
{
    const char *line = "SLURMJWT/1 ERR denied root may not have a token.\n";
    struct sjwt_response r;
    const char *bad = sjwt_parse_response(line, strlen(line), &r);

    check(bad == NULL && r.kind == SJWT_RESP_ERR && strcmp(r.code, "denied") == 0
          && r.message_len == strlen("root may not have a token.")
          && memcmp(r.message, "root may not have a token.", r.message_len) == 0,
          "an ERR line gives code and message");
    check(!refused("SLURMJWT/1 ERR no-user no such user\n"),
          "a code with a dash is accepted");
}

static void test_refusals(void)
{
    static const char *const bad[] = {
        "", "\n", "SLURMJWT/1 OK 1700000000 1 tok", /* no newline */
        "SLURMJWT/1 OK 1700000000 1 tok\nX", "SLURMJWT/1 OK 1700000000 1 tok\n\n",
        "SLURMJWT/2 OK 1700000000 1 tok\n", "slurmjwt/1 OK 1700000000 1 tok\n",
        "SLURMJWT/1  OK 1700000000 1 tok\n", "SLURMJWT/1 ok 1700000000 1 tok\n",
        "SLURMJWT/1 PONG 0.1.0\n", "SLURMJWT/1 OK\n", "SLURMJWT/1 OK \n",
        "SLURMJWT/1 OK 1700000000\n", "SLURMJWT/1 OK 1700000000 1\n",
        "SLURMJWT/1 OK 1700000000 1 \n", "SLURMJWT/1 OK 1700000000 2 tok\n",
        "SLURMJWT/1 OK 1700000000 10 tok\n", "SLURMJWT/1 OK -1700000000 1 tok\n",
        "SLURMJWT/1 OK +1700000000 1 tok\n", "SLURMJWT/1 OK 0 1 tok\n",
        "SLURMJWT/1 OK 01700000000 1 tok\n", "SLURMJWT/1 OK 17e8 1 tok\n",
        "SLURMJWT/1 OK 1234567890123456789 1 tok\n",
        "SLURMJWT/1 OK 1700000000  1 tok\n", "SLURMJWT/1 OK 1700000000 1 tok \n",
        "SLURMJWT/1 OK 1700000000 1 to k\n", "SLURMJWT/1 OK 1700000000 1 tok=\n",
        "SLURMJWT/1 OK 1700000000 1 tok;rm\n", "SLURMJWT/1 OK 1700000000 1 t\tk\n",
        "SLURMJWT/1 OK 1700000000 1 tok\r\n", "SLURMJWT/1 OK 1700000000 1 t\xc3\xa9k\n",
        "SLURMJWT/1 ERR\n", "SLURMJWT/1 ERR denied\n", "SLURMJWT/1 ERR denied \n",
        "SLURMJWT/1 ERR Denied no\n", "SLURMJWT/1 ERR den_ied no\n",
        "SLURMJWT/1 ERR denied bell\a\n",
        "SLURMJWT/1 ERR aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa too long a code\n",
        "SLURMJWT/1 \n", "SLURMJWT/1\n", " SLURMJWT/1 OK 1700000000 1 tok\n",
    };
    size_t i;
    char name[200];

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(name, sizeof(name), "refused: case %zu", i);
        check(refused(bad[i]), name);
    }
}

static void test_sizes(void)
{
    char buf[SJWT_RESPONSE_MAX + 2];
    struct sjwt_response r;
    size_t head = strlen("SLURMJWT/1 OK 1700000000 1 ");

    memcpy(buf, "SLURMJWT/1 OK 1700000000 1 ", head);
    memset(buf + head, 'a', sizeof(buf) - head);
    buf[SJWT_RESPONSE_MAX - 1] = '\n';
    check(sjwt_parse_response(buf, SJWT_RESPONSE_MAX, &r) == NULL
          && r.token_len == SJWT_RESPONSE_MAX - head - 1,
          "a line of exactly 1024 bytes is accepted");
    buf[SJWT_RESPONSE_MAX - 1] = 'a';
    buf[SJWT_RESPONSE_MAX] = '\n';
    check(sjwt_parse_response(buf, SJWT_RESPONSE_MAX + 1, &r) != NULL,
          "a line of 1025 bytes is refused");
    check(sjwt_parse_response("SLURMJWT/1 OK 1 1 a\0b\n", 22, &r) != NULL,
          "a NUL byte is refused");
}

static void test_request(void)
{
    char buf[SJWT_REQUEST_MAX + 1], user[300];
    int n = sjwt_format_request(buf, sizeof(buf), "alice");

    check(n == 25 && strcmp(buf, "SLURMJWT/1 TOKEN alice -\n") == 0,
          "a request names the user and asks for the default lifespan");
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
    test_sizes();
    test_request();
    test_fingerprint();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
