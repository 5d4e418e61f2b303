/*
 * protocol.c - build requests for and parse responses from slurmjwt-helper.
 *
 * Strict on purpose: anything that is not exactly one well-formed line of the
 * version 2 protocol is refused, because the token ends up in sshd's PAM
 * environment and in every Slurm command, and a lenient parser is how
 * garbage would get there.
 */
#include <string.h>

#include "protocol.h"

#define MAGIC "SLURMJWT/2 "
#define MAGIC_LEN (sizeof(MAGIC) - 1)

/* 18 digits always fit a long long; real epoch values have 10. */
#define EPOCH_DIGITS_MAX 18

int sjwt_is_kid_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
        || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

int sjwt_is_token_char(unsigned char c)
{
    return sjwt_is_kid_char(c) || c == '.';
}

/* Read a positive decimal without leading zeros, then one space. */
static const char *epoch(const char **pp, const char *end, long long *out,
                         const char *what)
{
    const char *p = *pp;
    size_t digits = 0;

    *out = 0;
    if (p == end || *p < '1' || *p > '9')
        return what;
    while (p < end && *p >= '0' && *p <= '9') {
        if (++digits > EPOCH_DIGITS_MAX)
            return what;
        *out = *out * 10 + (*p - '0');
        p++;
    }
    if (p == end || *p != ' ')
        return what;
    *pp = p + 1;
    return NULL;
}

/* Parse "OK <exp> <refresh> <export> <kid> <token>" (after the magic, no newline). */
static const char *parse_ok(const char *p, const char *end,
                            struct sjwt_response *out)
{
    const char *bad;

    out->kind = SJWT_RESP_OK;
    if ((bad = epoch(&p, end, &out->exp,
                     "exp is not a positive decimal followed by one space")) != NULL
        || (bad = epoch(&p, end, &out->refresh,
                        "refresh is not a positive decimal followed by one space")) != NULL)
        return bad;
    if (out->refresh > out->exp)
        return "refresh is after exp";
    if (p == end || (*p != '0' && *p != '1'))
        return "export flag is not 0 or 1";
    out->export_env = *p - '0';
    p++;
    if (p == end || *p != ' ')
        return "export flag is not followed by one space";
    p++;
    out->kid = p;
    while (p < end && sjwt_is_kid_char((unsigned char) *p))
        p++;
    out->kid_len = (size_t) (p - out->kid);
    if (out->kid_len == 0 || out->kid_len > SJWT_KID_MAX)
        return "kid is empty or longer than 64 characters";
    if (p == end || *p != ' ')
        return "kid has a character outside [A-Za-z0-9_-]";
    p++;
    out->token = p;
    while (p < end && sjwt_is_token_char((unsigned char) *p))
        p++;
    out->token_len = (size_t) (p - out->token);
    if (out->token_len == 0)
        return "token is empty";
    if (out->token_len > SJWT_TOKEN_MAX)
        return "token is longer than 7168 characters";
    if (p != end)
        return "token has a character outside [A-Za-z0-9_.-]";
    return NULL;
}

/* Parse "ERR <code> <sentence>" (after the magic, no newline). */
static const char *parse_err(const char *p, const char *end,
                             struct sjwt_response *out)
{
    size_t n = 0;

    out->kind = SJWT_RESP_ERR;
    while (p < end && ((*p >= 'a' && *p <= 'z') || *p == '-')) {
        if (n == SJWT_CODE_MAX)
            return "error code is too long";
        out->code[n++] = *p++;
    }
    out->code[n] = '\0';
    if (n == 0)
        return "error code is empty";
    if (p == end || *p != ' ')
        return "error code is not followed by one space";
    p++;
    out->message = p;
    while (p < end && (unsigned char) *p >= 0x20 && (unsigned char) *p < 0x7f)
        p++;
    out->message_len = (size_t) (p - out->message);
    if (out->message_len == 0)
        return "error message is empty";
    if (p != end)
        return "error message has a non-printable byte";
    return NULL;
}

const char *sjwt_parse_response(const char *buf, size_t len,
                                struct sjwt_response *out)
{
    const char *end;

    memset(out, 0, sizeof(*out));
    if (len == 0)
        return "empty response";
    if (len > SJWT_RESPONSE_MAX)
        return "response longer than 8192 bytes";
    end = memchr(buf, '\n', len);
    if (end == NULL)
        return "response has no newline";
    if (end != buf + len - 1)
        return "data after the newline";
    if (len >= 9 && memcmp(buf, "SLURMJWT/", 9) == 0
        && (len < MAGIC_LEN || memcmp(buf, MAGIC, MAGIC_LEN) != 0))
        return "the helper speaks another protocol version; restart slurmjwt-helper";
    if (len < MAGIC_LEN || memcmp(buf, MAGIC, MAGIC_LEN) != 0)
        return "response does not start with SLURMJWT/2";
    buf += MAGIC_LEN;
    if ((size_t) (end - buf) >= 3 && memcmp(buf, "OK ", 3) == 0)
        return parse_ok(buf + 3, end, out);
    if ((size_t) (end - buf) >= 4 && memcmp(buf, "ERR ", 4) == 0)
        return parse_err(buf + 4, end, out);
    return "unknown status word";
}

int sjwt_format_request(char *buf, size_t size, const char *user)
{
    static const char head[] = MAGIC "TOKEN ";
    static const char tail[] = " -\n";
    size_t ulen, total, i;

    if (user == NULL)
        user = "-";
    ulen = strlen(user);
    total = (sizeof(head) - 1) + ulen + (sizeof(tail) - 1);
    if (ulen == 0 || total > SJWT_REQUEST_MAX || total >= size)
        return -1;
    for (i = 0; i < ulen; i++)
        if ((unsigned char) user[i] <= 0x20 || (unsigned char) user[i] >= 0x7f)
            return -1;
    memcpy(buf, head, sizeof(head) - 1);
    memcpy(buf + sizeof(head) - 1, user, ulen);
    memcpy(buf + sizeof(head) - 1 + ulen, tail, sizeof(tail));  /* with NUL */
    return (int) total;
}

uint64_t sjwt_fingerprint(const char *data, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i, start = 0;

    /* Only the signature part: unique per token, and a quarter of the work
     * for the helper, which computes the same hash in Python. */
    for (i = len; i > 0; i--)
        if (data[i - 1] == '.') {
            start = i;
            break;
        }
    for (i = start; i < len; i++) {
        h ^= (unsigned char) data[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
