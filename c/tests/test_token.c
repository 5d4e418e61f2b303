/*
 * test_token.c - C unit tests of ../common/token.c: what a token says, read
 * without verifying it. Tokens are built here from JSON text.
 */
#include <stdio.h>
#include <string.h>

#include "../common/token.h"
#include "check.h"

/* base64url without padding of len bytes of in, appended to out. */
static void b64url(const char *in, size_t len, char *out)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i, o = strlen(out);
    unsigned v;

    for (i = 0; i < len; i += 3) {
        v = (unsigned char) in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned char) in[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char) in[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = abc[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = abc[v & 63];
    }
    out[o] = '\0';
}

/* header.payload.sig from two JSON texts. */
static const char *jwt(const char *header, const char *payload)
{
    static char buf[8192];

    buf[0] = '\0';
    b64url(header, strlen(header), buf);
    strcat(buf, ".");
    b64url(payload, strlen(payload), buf);
    strcat(buf, ".c2lnbmF0dXJl");
    return buf;
}

static int peek(const char *header, const char *payload, struct sjwt_claims *c)
{
    const char *t = jwt(header, payload);

    return sjwt_peek(t, strlen(t), c) == NULL;
}

static void test_good(void)
{
    struct sjwt_claims c;

    check(peek("{\"alg\":\"HS256\",\"kid\":\"k-1_x\",\"typ\":\"JWT\"}",
               "{\"exp\":1700000000,\"iat\":1699998200,\"sun\":\"alice\"}", &c)
          && strcmp(c.sun, "alice") == 0 && c.exp == 1700000000 && strcmp(c.kid, "k-1_x") == 0,
          "sun, exp and kid are read");
    check(peek("{\"alg\":\"HS256\"}", "{\"sun\":\"bob\",\"exp\":5}", &c)
          && strcmp(c.kid, "-") == 0, "no kid reads as '-' (scontrol's tokens)");
    check(peek(" { \"alg\" : \"RS256\" , \"kid\" : \"k\" } ",
               "{\n\"id\":{\"gids\":[1,2,{\"a\":[]}],\"gecos\":\"A \\\"B\\\"\"},\"uid\":1001,"
               "\"sun\":\"carol\",\"exp\":1700000000,\"x\":null,\"y\":true,\"z\":-1.5e3}", &c)
          && strcmp(c.sun, "carol") == 0, "whitespace and nested identity claims are skipped");
}

static void test_refused(void)
{
    static const char *const payloads[] = {
        "{\"exp\":1700000000}",                                 /* no sun */
        "{\"sun\":\"alice\"}",                                  /* no exp */
        "{\"sun\":\"alice\",\"exp\":1.7e9}",                    /* float exp */
        "{\"sun\":\"alice\",\"exp\":\"1700000000\"}",           /* string exp */
        "{\"sun\":\"alice\",\"exp\":1700000000.5}",
        "{\"sun\":\"alice\",\"exp\":-5}",
        "{\"sun\":5,\"exp\":1700000000}",
        "{\"sun\":\"al\\u0069ce\",\"exp\":1700000000}",         /* escaped value */
        "{\"s\\u0075n\":\"root\",\"sun\":\"alice\",\"exp\":1}", /* escaped name */
        "{\"sun\":\"alice\",\"sun\":\"root\",\"exp\":1}",       /* twice */
        "{\"sun\":\"\",\"exp\":1}",
        "{\"sun\":\"alice\",\"exp\":1",                         /* unterminated */
        "{\"sun\":\"alice\",\"exp\":1}x",                       /* trailing data */
        "[\"sun\",\"alice\"]",
        "{\"sun\":\"alice\",\"exp\":1234567890123456789}",
        "{\"sun\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"exp\":1}",
        "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],"
        "\"sun\":\"alice\",\"exp\":1}",                         /* too deep */
    };
    struct sjwt_claims c;
    char name[64];
    size_t i;

    for (i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        snprintf(name, sizeof(name), "refused payload %zu", i);
        check(!peek("{\"alg\":\"HS256\"}", payloads[i], &c), name);
    }
    check(!peek("{\"kid\":\"a.b\"}", "{\"sun\":\"a\",\"exp\":1}", &c), "a kid with a dot");
    check(!peek("{\"kid\":5}", "{\"sun\":\"a\",\"exp\":1}", &c), "a kid that is a number");
    check(!peek("not json", "{\"sun\":\"a\",\"exp\":1}", &c), "a header that is not JSON");
    check(sjwt_peek("a.b", 3, &c) != NULL, "two parts");
    check(sjwt_peek("a.b.c.d", 7, &c) != NULL, "four parts");
    check(sjwt_peek("a$.b.c", 6, &c) != NULL, "a character outside the token set");
    check(sjwt_peek("A.b.c", 5, &c) != NULL, "base64url of one character (invalid length)");
    check(sjwt_peek("", 0, &c) != NULL, "empty");
}

int main(void)
{
    test_good();
    test_refused();
    return report();
}
