/*
 * cachetool.c - a command-line door to ../common/cache.c and token.c for the
 * Python tests, which write with one side and read with the other
 * (tests/unit/test_c_cache.py); built with ASan/UBSan by `make c-harness`.
 *
 *   cachetool store DIR     stdin "exp refresh export kid token": store it as
 *                           the caller; prints "OK" or "UNSAFE <why>"
 *   cachetool load DIR      prints "OK exp refresh export kid token",
 *                           "NONE <why>" or "UNSAFE <why>"
 *   cachetool format NOW UPTIME BOOTID
 *                           stdin as for store: print the token line
 *   cachetool peek          stdin a token: "OK sun exp kid" or "BAD <why>"
 *   cachetool keyid DIR     read DIR/id as the wrappers do: "OK kid" or "NONE"
 *
 * Test tokens only: the module and the wrappers never print one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/cache.h"
#include "../common/token.h"

static int read_entry(struct sjwt_entry *e)
{
    static char token[SJWT_TOKEN_MAX + 2];
    char kid[SJWT_KID_MAX + 2];

    memset(e, 0, sizeof(*e));
    if (scanf("%lld %lld %d %65s %7169s", &e->exp, &e->refresh, &e->export_env, kid,
              token) != 5 || strlen(kid) > SJWT_KID_MAX || strlen(token) > SJWT_TOKEN_MAX)
        return -1;
    strcpy(e->kid, kid);
    strcpy(e->token, token);
    return 0;
}

int main(int argc, char **argv)
{
    static struct sjwt_entry e;
    static char buf[SJWT_TOKEN_MAX + 2], line[SJWT_CACHE_FILE_MAX];
    char why[512];
    struct sjwt_claims c;
    const char *bad;
    int rc;

    if (argc == 3 && strcmp(argv[1], "store") == 0) {
        if (read_entry(&e) < 0)
            return 2;
        rc = sjwt_cache_store(argv[2], getuid(), &e, why, sizeof(why));
        printf(rc == SJWT_CACHE_OK ? "OK\n" : "UNSAFE %s\n", why);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "load") == 0) {
        rc = sjwt_cache_load(argv[2], getuid(), &e, why, sizeof(why));
        if (rc == SJWT_CACHE_OK)
            printf("OK %lld %lld %d %s %s\n", e.exp, e.refresh, e.export_env, e.kid, e.token);
        else
            printf("%s %s\n", rc == SJWT_CACHE_NONE ? "NONE" : "UNSAFE", why);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "format") == 0) {
        if (read_entry(&e) < 0
            || sjwt_cache_format(line, sizeof(line), &e, atof(argv[2]), atof(argv[3]),
                                 argv[4]) < 0)
            return 2;
        fputs(line, stdout);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "peek") == 0) {
        if (fgets(buf, sizeof(buf), stdin) == NULL)
            return 2;
        buf[strcspn(buf, "\n")] = '\0';
        bad = sjwt_peek(buf, strlen(buf), &c);
        if (bad != NULL)
            printf("BAD %s\n", bad);
        else
            printf("OK %s %lld %s\n", c.sun, c.exp, c.kid);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "keyid") == 0) {
        char kid[SJWT_KID_MAX + 1];

        if (sjwt_read_key_id(argv[2], kid) == 0)
            printf("OK %s\n", kid);
        else
            printf("NONE\n");
        return 0;
    }
    fprintf(stderr, "usage: cachetool store|load|keyid DIR | format NOW UPTIME BOOTID | "
            "peek\n");
    return 2;
}
