/*
 * test_conf.c - C unit tests of ../wrap/conf.c: the slurmjwt.conf keys the
 * wrapper reads, with config.py's bounds and words. The values are checked
 * on a text buffer (wrap_conf_parse), as anyone; the file must be root's, so
 * the cases that read one need root and are skipped as anyone else.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../wrap/conf.h"
#include "check.h"

static char base[] = "/tmp/slurmjwt-test-conf-XXXXXX";
static char file[300];

/* Load text as slurmjwt.conf; the return code, with why. */
static int load(const char *text, struct wrap_conf *c, char *why, size_t whylen)
{
    FILE *f = fopen(file, "w");

    if (f == NULL)
        return 2;
    fputs(text, f);
    fclose(f);
    why[0] = '\0';
    return wrap_conf_load(c, file, why, whylen);
}

/* Parse text as the file "slurmjwt.conf"; the return code, with why. */
static int parse(const char *text, struct wrap_conf *c, char *why, size_t whylen)
{
    char buf[256];

    snprintf(buf, sizeof(buf), "%s", text);
    why[0] = '\0';
    return wrap_conf_parse(c, buf, "slurmjwt.conf", why, whylen);
}

/* The bound that keeps the client's poll() timeout in range, as anyone. */
static void test_helper_timeout_bound(void)
{
    struct wrap_conf c;
    char why[600];

    check(parse("HelperTimeout=60\n", &c, why, sizeof(why)) == 0
          && c.helper_timeout_ms == 60000 && why[0] == '\0', "parse: HelperTimeout=60 is taken");
    check(parse("HelperTimeout = \"7\" # seconds\n", &c, why, sizeof(why)) == 0
          && c.helper_timeout_ms == 7000, "parse: spaces, quotes and a comment");
    check(parse("MinUid=5\n# a comment\nHelperTimeout=61\n", &c, why, sizeof(why)) < 0
          && c.helper_timeout_ms == 3000 && c.min_uid == 1000,
          "parse: HelperTimeout=61 is refused, the defaults kept");
    check(strcmp(why, "slurmjwt.conf:3: HelperTimeout=61 is above the maximum 60") == 0,
          "parse: in config.py's words, with file and line");
    check(parse("HelperTimeout=2160000\n", &c, why, sizeof(why)) < 0
          && strcmp(why, "slurmjwt.conf:1: HelperTimeout=2160000 is above the maximum 60") == 0
          && c.helper_timeout_ms == 3000, "parse: HelperTimeout of 25 days is refused");
    check(parse("HelperTimeout=0\n", &c, why, sizeof(why)) < 0
          && strcmp(why, "slurmjwt.conf:1: bad value for HelperTimeout") == 0,
          "parse: HelperTimeout=0 is bad");
    check(parse("HelperTimeout=9999999999\n", &c, why, sizeof(why)) < 0
          && strcmp(why, "slurmjwt.conf:1: bad value for HelperTimeout") == 0,
          "parse: more than 9 digits is bad");
}

static void test_helper_timeout(void)
{
    struct wrap_conf c;
    char why[600], want[600];

    check(load("HelperTimeout=60\n", &c, why, sizeof(why)) == 0
          && c.helper_timeout_ms == 60000, "HelperTimeout=60 is taken");
    check(load("# a comment\nHelperTimeout=61\n", &c, why, sizeof(why)) < 0
          && c.helper_timeout_ms == 3000, "HelperTimeout=61 is refused, the defaults kept");
    snprintf(want, sizeof(want), "%s:2: HelperTimeout=61 is above the maximum 60", file);
    check(strcmp(why, want) == 0, "in config.py's words, with file and line");
    /* 25 days: what overflowed the client's poll() timeout. */
    check(load("HelperTimeout=2160000\n", &c, why, sizeof(why)) < 0
          && c.helper_timeout_ms == 3000, "HelperTimeout of 25 days is refused");
    snprintf(want, sizeof(want), "%s:1: HelperTimeout=2160000 is above the maximum 60", file);
    check(strcmp(why, want) == 0, "and says the maximum");
    check(load("HelperTimeout=0\n", &c, why, sizeof(why)) < 0
          && strstr(why, ":1: bad value for HelperTimeout") != NULL, "HelperTimeout=0 is bad");
}

int main(void)
{
    if (mkdtemp(base) == NULL)
        return 2;
    snprintf(file, sizeof(file), "%s/slurmjwt.conf", base);
    test_helper_timeout_bound();
    if (geteuid() == 0)
        test_helper_timeout();
    else
        printf("# skipped: slurmjwt.conf must be root's; the file cases need root\n");
    unlink(file);
    rmdir(base);
    return report();
}
