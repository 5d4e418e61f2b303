/*
 * token.c - read sun, exp and kid out of a JWT without verifying it.
 *
 * A base64url decoder and a small JSON walker that looks at the top level of
 * one object only: strings with escapes are skipped, never interpreted; a
 * top-level member name with an escape, a wanted member given twice, or one
 * whose value has an escape or the wrong type makes the token unusable. Everything is bounded by the decoded size (a token is at
 * most SJWT_TOKEN_MAX characters) and the nesting depth.
 */
#include <string.h>

#include "token.h"

#define DECODED_MAX (SJWT_TOKEN_MAX / 4 * 3 + 3)
#define DEPTH_MAX 32
#define EXP_DIGITS_MAX 18

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decode unpadded base64url into out (room for size bytes); -1 if invalid. */
static long decode(const char *in, size_t len, unsigned char *out, size_t size)
{
    unsigned long acc = 0;
    size_t i, n = 0;
    int bits = 0, v;

    if (len % 4 == 1)
        return -1;
    for (i = 0; i < len; i++) {
        if ((v = b64val((unsigned char) in[i])) < 0)
            return -1;
        acc = (acc << 6) | (unsigned long) v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == size)
                return -1;
            out[n++] = (unsigned char) (acc >> bits);
            acc &= (1UL << bits) - 1;
        }
    }
    return (long) n;
}

struct cursor {
    const unsigned char *p, *end;
};

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/*
 * At an opening quote: move past the string. *plain is set when it holds no
 * escape and no control byte, so that [start, start + len) is its value.
 */
static int skip_string(struct cursor *c, const unsigned char **start, size_t *len, int *plain)
{
    if (c->p == c->end || *c->p != '"')
        return -1;
    c->p++;
    *start = c->p;
    *plain = 1;
    while (c->p < c->end && *c->p != '"') {
        if (*c->p < 0x20)
            return -1;
        if (*c->p == '\\') {
            *plain = 0;
            if (++c->p == c->end)
                return -1;
        }
        c->p++;
    }
    if (c->p == c->end)
        return -1;
    *len = (size_t) (c->p - *start);
    c->p++;
    return 0;
}

/* Move past any JSON value (nested ones included, up to DEPTH_MAX). */
static int skip_value(struct cursor *c, int depth)
{
    const unsigned char *s;
    size_t n;
    int plain;

    skip_ws(c);
    if (c->p == c->end || depth > DEPTH_MAX)
        return -1;
    if (*c->p == '"')
        return skip_string(c, &s, &n, &plain);
    if (*c->p == '{' || *c->p == '[') {
        unsigned char close = *c->p == '{' ? '}' : ']';

        c->p++;
        skip_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 0;
        }
        for (;;) {
            if (close == '}') {
                skip_ws(c);
                if (skip_string(c, &s, &n, &plain) < 0)
                    return -1;
                skip_ws(c);
                if (c->p == c->end || *c->p++ != ':')
                    return -1;
            }
            if (skip_value(c, depth + 1) < 0)
                return -1;
            skip_ws(c);
            if (c->p == c->end)
                return -1;
            if (*c->p == close) {
                c->p++;
                return 0;
            }
            if (*c->p++ != ',')
                return -1;
        }
    }
    /* A number, true, false or null: the characters they may hold. */
    s = c->p;
    while (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '-' || *c->p == '+'
                             || *c->p == '.' || (*c->p >= 'a' && *c->p <= 'z')
                             || *c->p == 'E'))
        c->p++;
    return c->p > s ? 0 : -1;
}

/* The members a caller wants from one object. */
struct wanted {
    const char *name;       /* member name */
    int is_string;          /* string value (else an integer) */
    char *str;              /* string: where, with room for str_max + 1 */
    size_t str_max;
    long long *num;         /* integer: where */
    int found;
};

static int take(struct cursor *c, struct wanted *w)
{
    const unsigned char *s;
    size_t n, digits = 0;
    int plain;
    long long v = 0;

    skip_ws(c);
    if (w->is_string) {
        if (skip_string(c, &s, &n, &plain) < 0 || !plain || n == 0 || n > w->str_max)
            return -1;
        memcpy(w->str, s, n);
        w->str[n] = '\0';
    } else {
        if (c->p == c->end || *c->p < '0' || *c->p > '9')
            return -1;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (++digits > EXP_DIGITS_MAX)
                return -1;
            v = v * 10 + (*c->p++ - '0');
        }
        /* 1.5 or 1e9: not the JSON integer slurmctld wants. */
        if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
            return -1;
        *w->num = v;
    }
    if (w->found++)
        return -1;  /* a member given twice: which one would slurmctld read? */
    return 0;
}

/* Walk one object; fill the wanted members; -1 on malformed JSON. */
static int walk(const unsigned char *json, size_t len, struct wanted *want, size_t nwant)
{
    struct cursor c = { json, json + len };
    const unsigned char *name;
    size_t n, i;
    int plain;

    skip_ws(&c);
    if (c.p == c.end || *c.p++ != '{')
        return -1;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}')
        c.p++;
    else
        for (;;) {
            skip_ws(&c);
            /* An escaped name ("s\u0075n") could spell a wanted one to
             * slurmctld's JSON parser while we skip it: refuse it. */
            if (skip_string(&c, &name, &n, &plain) < 0 || !plain)
                return -1;
            skip_ws(&c);
            if (c.p == c.end || *c.p++ != ':')
                return -1;
            for (i = 0; i < nwant; i++)
                if (strlen(want[i].name) == n && memcmp(name, want[i].name, n) == 0)
                    break;
            if (i < nwant ? take(&c, &want[i]) < 0 : skip_value(&c, 1) < 0)
                return -1;
            skip_ws(&c);
            if (c.p == c.end)
                return -1;
            if (*c.p == '}') {
                c.p++;
                break;
            }
            if (*c.p++ != ',')
                return -1;
        }
    skip_ws(&c);
    return c.p == c.end ? 0 : -1;
}

const char *sjwt_peek(const char *token, size_t len, struct sjwt_claims *out)
{
    unsigned char buf[DECODED_MAX];
    const char *dot1, *dot2;
    long n;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (len == 0 || len > SJWT_TOKEN_MAX)
        return "token is empty or too long";
    for (i = 0; i < len; i++)
        if (!sjwt_is_token_char((unsigned char) token[i]))
            return "token has a character outside [A-Za-z0-9_.-]";
    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t) (token + len - dot1 - 1)) : NULL;
    if (dot1 == NULL || dot2 == NULL || memchr(dot2 + 1, '.', (size_t) (token + len - dot2 - 1)))
        return "token is not three parts";
    {
        struct wanted h[] = { { "kid", 1, out->kid, SJWT_KID_MAX, NULL, 0 } };

        n = decode(token, (size_t) (dot1 - token), buf, sizeof(buf));
        if (n < 0 || walk(buf, (size_t) n, h, 1) < 0)
            return "token header is not a base64url JSON object with a plain kid";
        if (!h[0].found)
            memcpy(out->kid, "-", 2);
        for (i = 0; h[0].found && out->kid[i] != '\0'; i++)
            if (!sjwt_is_kid_char((unsigned char) out->kid[i]))
                return "token kid has a character outside [A-Za-z0-9_-]";
    }
    {
        struct wanted p[] = {
            { "sun", 1, out->sun, SJWT_NAME_MAX, NULL, 0 },
            { "exp", 0, NULL, 0, &out->exp, 0 },
        };

        n = decode(dot1 + 1, (size_t) (dot2 - dot1 - 1), buf, sizeof(buf));
        if (n < 0 || walk(buf, (size_t) n, p, 2) < 0)
            return "token payload is not a base64url JSON object";
        if (!p[0].found || !p[1].found)
            return "token payload lacks a plain sun or an integer exp";
    }
    return NULL;
}
