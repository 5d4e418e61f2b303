/*
 * test_conf.c - C unit tests of ../wrap/conf.c: the slurmjwt.conf keys the
 * wrapper reads, with config.py's bounds and words. The file must be
 * root's, so the value cases need root; as anyone else they are skipped.
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
    if (geteuid() == 0)
        test_helper_timeout();
    else
        printf("# skipped: slurmjwt.conf must be root's; run as root\n");
    unlink(file);
    rmdir(base);
    return report();
}
