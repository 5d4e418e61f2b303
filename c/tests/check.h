/*
 * check.h - the one assertion of the C unit tests: print "ok - NAME" or
 * "not ok - NAME", count, and report "N passed, N failed" at the end.
 */
#ifndef SLURMJWT_CHECK_H
#define SLURMJWT_CHECK_H

#include <stdio.h>

static int passed, failed;

static void check(int ok, const char *name)
{
    if (ok)
        passed++;
    else
        failed++;
    printf("%s - %s\n", ok ? "ok" : "not ok", name);
}

static int report(void)
{
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

#endif /* SLURMJWT_CHECK_H */
