/*
 * test_cache.c - C unit tests of ../common/cache.c: the format 2 line,
 * store and load in a temporary directory, and refusal of unsafe state.
 * Run as any user; the owner cases use the caller's uid + 1.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/cache.h"
#include "check.h"

static char base[] = "/tmp/slurmjwt-test-cache-XXXXXX";

static struct sjwt_entry entry(long long exp, long long refresh, const char *kid)
{
    struct sjwt_entry e = { .exp = exp, .refresh = refresh, .export_env = 1 };

    strcpy(e.kid, kid);
    strcpy(e.token, "aaa.bbb.ccc");
    return e;
}

static void test_format_and_parse(void)
{
    struct sjwt_entry e = entry(10000, 9400, "k-1"), back;
    char line[512];
    int n = sjwt_cache_format(line, sizeof(line), &e, 8200.0, 500.7, "b0-1f");

    /* 1700.7 rounds up, 2295.7 down: the same numbers as cache.py. */
    check(n > 0 && strcmp(line, "slurmjwt2 b0-1f 1701 2295 10000 1 k-1 aaa.bbb.ccc end\n") == 0,
          "the line has the fields of docs/internals.md, rounded as cache.py rounds them");
    check(sjwt_cache_parse(line, (size_t) n, &back) == NULL && back.exp == 10000
          && back.refresh == 9401 && back.export_env == 1 && strcmp(back.kid, "k-1") == 0
          && strcmp(back.token, "aaa.bbb.ccc") == 0,
          "parsing gives the entry back (refresh rounded up to the second)");
    e = entry(10000, 9000, "k");
    n = sjwt_cache_format(line, sizeof(line), &e, 9500.0, 100.0, "b");
    check(sjwt_cache_parse(line, (size_t) n, &back) == NULL && back.refresh == 9000,
          "a refresh time before boot is a negative uptime second");
}

static void test_parse_refusals(void)
{
    static const char *const bad[] = {
        "", "end\n", "slurmjwt2 b 1 2 3 1 k a.b.c end",        /* torn: no newline */
        "slurmjwt2 b 1 2 3 1 k a.b.c\n",                        /* torn: no end */
        "slurmjwt1 b 1 2 3 1 a.b.c\n",                          /* format 1 */
        "slurmjwt2 b 1 2 3 1 k a.b.c end\nmore\n",
        "slurmjwt2 b 1 2 x 1 k a.b.c end\n", "slurmjwt2 b 1 2 -3 1 k a.b.c end\n",
        "slurmjwt2 b 1 2 3 2 k a.b.c end\n", "slurmjwt2 b 1 2 3 1 k abc end\n",
        "slurmjwt2 b 1 2 3 1 k a.b.c.d end\n", "slurmjwt2 b 1 2 3 1 k$x a.b.c end\n",
        "slurmjwt2 b 1 2 3 1 k a.b;c end\n", "slurmjwt2 b  1 2 3 1 k a.b.c end\n",
        "slurmjwt2 B 1 2 3 1 k a.b.c end\n",                    /* boot id not hex */
        "slurmjwt2 b 1 2 1234567890123 1 k a.b.c end\n",        /* 13 digits */
        "slurmjwt2 b 1 2 3 1 k a.b.c extra end\n",
    };
    struct sjwt_entry e;
    char name[64];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(name, sizeof(name), "refused line %zu", i);
        check(sjwt_cache_parse(bad[i], strlen(bad[i]), &e) != NULL, name);
    }
}

static void test_store_and_load(void)
{
    char dir[256], path[300], why[512];
    struct sjwt_entry e = entry(time(NULL) + 1800, time(NULL) + 1200, "kid"), back;
    struct stat st;

    snprintf(dir, sizeof(dir), "%s/c", base);
    check(sjwt_cache_load(dir, getuid(), &back, why, sizeof(why)) == SJWT_CACHE_NONE
          && strcmp(why, "no cache directory") == 0, "no directory: nothing cached");
    check(sjwt_cache_store(dir, getuid(), &e, why, sizeof(why)) == SJWT_CACHE_OK,
          "store creates the directory and writes");
    check(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700, "the directory is 0700");
    snprintf(path, sizeof(path), "%s/token", dir);
    check(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "token is 0600");
    snprintf(path, sizeof(path), "%s/token.csh", dir);
    check(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "token.csh is 0600");
    snprintf(path, sizeof(path), "%s/.clock", dir);
    check(stat(path, &st) == 0, ".clock exists");
    check(sjwt_cache_load(dir, getuid(), &back, why, sizeof(why)) == SJWT_CACHE_OK
          && back.exp == e.exp && strcmp(back.token, e.token) == 0
          && strcmp(back.kid, "kid") == 0 && back.refresh >= e.refresh
          && back.refresh <= e.refresh + 1, "load reads back what store wrote");
    check(sjwt_cache_load(dir, getuid() + 1, &back, why, sizeof(why)) == SJWT_CACHE_UNSAFE
          && strstr(why, "not by you") != NULL, "a directory of another owner is refused");
    chmod(dir, 0750);
    check(sjwt_cache_load(dir, getuid(), &back, why, sizeof(why)) == SJWT_CACHE_UNSAFE
          && strstr(why, "has mode 0750; run chmod 0700") != NULL,
          "a directory with group bits is refused with the fix");
    check(sjwt_cache_store(dir, getuid(), &e, why, sizeof(why)) == SJWT_CACHE_UNSAFE,
          "and nothing is written into it");
    chmod(dir, 0700);
    snprintf(path, sizeof(path), "%s/token", dir);
    chmod(path, 0644);
    check(sjwt_cache_load(dir, getuid(), &back, why, sizeof(why)) == SJWT_CACHE_UNSAFE
          && strstr(why, "has mode 0644; run chmod 0600") != NULL,
          "a readable token file is refused with the fix");
}

static void test_links(void)
{
    char dir[256], target[300], link[300], why[512];
    struct sjwt_entry e = entry(time(NULL) + 1800, time(NULL) + 1200, "kid"), back;
    FILE *f;
    char text[64] = "";

    snprintf(dir, sizeof(dir), "%s/l", base);
    snprintf(target, sizeof(target), "%s/precious", base);
    f = fopen(target, "w");
    fputs("keep me\n", f);
    fclose(f);
    check(sjwt_cache_store(dir, getuid(), &e, why, sizeof(why)) == SJWT_CACHE_OK, "a cache");
    snprintf(link, sizeof(link), "%s/token", dir);
    unlink(link);
    check(symlink(target, link) == 0, "a link planted as token");
    check(sjwt_cache_load(dir, getuid(), &back, why, sizeof(why)) == SJWT_CACHE_UNSAFE
          && strstr(why, "holds a symlink named token") != NULL, "is refused on read");
    check(sjwt_cache_store(dir, getuid(), &e, why, sizeof(why)) == SJWT_CACHE_OK,
          "a store replaces the link");
    f = fopen(target, "r");
    check(f != NULL && fgets(text, sizeof(text), f) && strcmp(text, "keep me\n") == 0,
          "and never writes through it");
    if (f)
        fclose(f);
    snprintf(link, sizeof(link), "%s/d", base);
    check(symlink(dir, link) == 0, "a link as the directory");
    check(sjwt_cache_load(link, getuid(), &back, why, sizeof(why)) == SJWT_CACHE_UNSAFE
          && strstr(why, "is a symlink or not a directory") != NULL, "is refused");
}

static void test_dir_choice(void)
{
    char buf[256], xdg[256];

    snprintf(xdg, sizeof(xdg), "%s", base);
    check(sjwt_cache_dir(buf, sizeof(buf), 4242, "/x", NULL) == 0 && strcmp(buf, "/x") == 0,
          "SLURMJWT_CACHE_DIR first");
    check(sjwt_cache_dir(buf, sizeof(buf), 0, "/x", NULL) == 0
          && strcmp(buf, SJWT_FALLBACK_BASE "/0") == 0, "but never for root");
    check(sjwt_cache_dir(buf, sizeof(buf), getuid(), NULL, xdg) == 0
          && strncmp(buf, base, strlen(base)) == 0 && strstr(buf, "/slurmjwt") != NULL,
          "then XDG_RUNTIME_DIR/slurmjwt when it is the caller's");
    check(sjwt_cache_dir(buf, sizeof(buf), getuid() + 1, NULL, xdg) == 0
          && strncmp(buf, SJWT_FALLBACK_BASE "/", sizeof(SJWT_FALLBACK_BASE)) == 0,
          "never someone else's runtime directory");
    check(sjwt_cache_dir(buf, sizeof(buf), 7, NULL, "relative") == 0
          && strcmp(buf, SJWT_FALLBACK_BASE "/7") == 0, "never a relative one");
}

static void test_key_id(void)
{
    char path[300], kid[SJWT_KID_MAX + 1];
    FILE *f;

    snprintf(path, sizeof(path), "%s/id", base);
    f = fopen(path, "w");
    fputs("abc_-1\n", f);
    fclose(f);
    check(sjwt_read_key_id(base, kid) == 0 && strcmp(kid, "abc_-1") == 0, "a key id is read");
    f = fopen(path, "w");
    fputs("abc$x\n", f);
    fclose(f);
    check(sjwt_read_key_id(base, kid) < 0, "a key id with a shell character is refused");
    f = fopen(path, "w");
    fputs("abc", f);
    fclose(f);
    check(sjwt_read_key_id(base, kid) < 0, "a key id without its newline is refused");
    f = fopen(path, "w");
    fprintf(f, "%064d\n", 0);
    fclose(f);
    check(sjwt_read_key_id(base, kid) == 0 && strlen(kid) == SJWT_KID_MAX,
          "a key id of 64 characters is read");
    /* 65 characters and a newline: the one that wrote kid[65] (issue 22). */
    f = fopen(path, "w");
    fprintf(f, "%065d\n", 0);
    fclose(f);
    check(sjwt_read_key_id(base, kid) < 0, "a key id of 65 characters is refused");
    f = fopen(path, "w");
    fprintf(f, "%066d\n", 0);
    fclose(f);
    check(sjwt_read_key_id(base, kid) < 0, "a key id of 66 characters is refused");
    unlink(path);
    check(sjwt_read_key_id(base, kid) < 0, "no key id file: none");
}

/* HS256 tokens, kid "kid", exp 2000000000, for alice, bob and alice2. */
#define HEAD "eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZCIsInR5cCI6IkpXVCJ9."
#define ALICE HEAD "eyJleHAiOjIwMDAwMDAwMDAsInN1biI6ImFsaWNlIn0.c2ln"
#define BOB HEAD "eyJleHAiOjIwMDAwMDAwMDAsInN1biI6ImJvYiJ9.c2ln"
#define ALICE2 HEAD "eyJleHAiOjIwMDAwMDAwMDAsInN1biI6ImFsaWNlMiJ9.c2ln"

static void test_stale(void)
{
    struct sjwt_entry e = entry(2000000000, 1999999400, "kid");
    const char *why;

    strcpy(e.token, ALICE);
    check(sjwt_entry_stale(&e, 1900000000, "kid", "alice") == NULL,
          "alice's live token of the key in use is hers to use");
    check((why = sjwt_entry_stale(&e, 1999999995, "kid", "alice")) != NULL
          && strcmp(why, "expired") == 0, "SAFETY seconds before exp it is expired");
    check((why = sjwt_entry_stale(&e, 1900000000, "other", "alice")) != NULL
          && strcmp(why, "of another key") == 0, "a token of another key is stale");
    check(sjwt_entry_stale(&e, 1900000000, "", "alice") != NULL,
          "with no key id published every entry is stale");
    /* A uid given to someone else within one boot: the old owner's cache. */
    check((why = sjwt_entry_stale(&e, 1900000000, "kid", "bob")) != NULL
          && strcmp(why, "for another user") == 0, "alice's token is stale for bob");
    check(sjwt_entry_stale(&e, 1900000000, "kid", "alic") != NULL
          && sjwt_entry_stale(&e, 1900000000, "kid", "") != NULL,
          "a prefix of the name is not the name");
    check(sjwt_entry_stale(&e, 1900000000, "kid", NULL) != NULL,
          "a caller whose name cannot be looked up uses nothing");
    strcpy(e.token, ALICE2);
    check(sjwt_entry_stale(&e, 1900000000, "kid", "alice") != NULL,
          "alice2's token is not alice's");
    strcpy(e.token, BOB);
    check(sjwt_entry_stale(&e, 1900000000, "kid", "bob") == NULL, "bob's is bob's");
    strcpy(e.token, "aaa.bbb.ccc");
    check(sjwt_entry_stale(&e, 1900000000, "kid", "alice") != NULL,
          "a token that says no user is no one's");
}

/* The note that the helper did not answer: bounded, and gone once a token is stored. */
static void test_late(void)
{
    char dir[256], path[300];
    struct sjwt_entry e = entry(time(NULL) + 1800, time(NULL) + 1200, "kid");
    long long now = 1900000000;
    FILE *f;

    snprintf(dir, sizeof(dir), "%s/late", base);
    sjwt_cache_note_late(dir, getuid(), now + 30);
    check(sjwt_cache_late_until(dir, getuid(), now) == 0, "no directory: nowhere to note it");
    mkdir(dir, 0700);
    sjwt_cache_note_late(dir, getuid(), now + 30);
    check(sjwt_cache_late_until(dir, getuid(), now) == now + 30, "noted, then read back");
    check(sjwt_cache_late_until(dir, getuid(), now + 30) == 0, "over when its second comes");
    check(sjwt_cache_late_until(dir, getuid(), now - 1) == 0,
          "more than SJWT_LATE_BACKOFF ahead (a clock set back) is no note");
    check(sjwt_cache_late_until(dir, getuid() + 1, now) == 0,
          "a directory of another owner is no note");
    snprintf(path, sizeof(path), "%s/" SJWT_LATE_FILE, dir);
    if ((f = fopen(path, "w")) != NULL) {
        fputs("1900000010", f);   /* no newline: torn */
        fclose(f);
    }
    check(sjwt_cache_late_until(dir, getuid(), now) == 0, "a torn note is no note");
    if ((f = fopen(path, "w")) != NULL) {
        fputs("-5\n", f);
        fclose(f);
    }
    check(sjwt_cache_late_until(dir, getuid(), now) == 0, "a malformed note is no note");
    sjwt_cache_note_late(dir, getuid(), time(NULL) + 10);
    check(sjwt_cache_store(dir, getuid(), &e, path, sizeof(path)) == SJWT_CACHE_OK
          && sjwt_cache_late_until(dir, getuid(), time(NULL)) == 0,
          "a stored token removes the note");
}

int main(void)
{
    char cmd[128];
    int rc;

    if (mkdtemp(base) == NULL)
        return 2;
    test_format_and_parse();
    test_parse_refusals();
    test_store_and_load();
    test_links();
    test_dir_choice();
    test_key_id();
    test_stale();
    test_late();
    rc = report();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    if (system(cmd) != 0)
        return 2;
    return rc;
}
