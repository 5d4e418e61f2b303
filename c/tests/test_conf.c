/*
 * test_conf.c - C unit tests of ../wrap/conf.c: the slurmjwt.conf keys the
 * wrapper reads, with config.py's bounds and words. The values are checked
 * on a text buffer (wrap_conf_parse), as anyone; the file must be root's, so
 * the cases that read one need root and are skipped as anyone else. And
 * the Export=auto rule (wrap_other_auth) on the table of
 * tests/unit/test_slurmconf.py: AuthType by the sockets present, under a
 * private root.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

/* Clusters=: config.py's list (items trimmed, empty ones dropped), in Slurm's lower case. */
static void test_clusters(void)
{
    struct wrap_conf c;
    char why[600], big[4300];

    check(parse("HelperTimeout=5\n", &c, why, sizeof(why)) == 0 && c.clusters[0] == '\0',
          "Clusters: unset, no check");
    check(parse("Clusters = A, b ,,\n", &c, why, sizeof(why)) == 0
          && strcmp(c.clusters, "a,b") == 0, "Clusters: trimmed, lower case");
    check(parse("clusters=\"x\"\n", &c, why, sizeof(why)) == 0 && strcmp(c.clusters, "x") == 0,
          "Clusters: any case of the key, quoted");
    memset(big, 'a', 4200);   /* over the 4095 bytes config.py allows too */
    memcpy(big, "Clusters=", 9);
    big[4200] = '\0';
    check(wrap_conf_parse(&c, big, "slurmjwt.conf", why, sizeof(why)) < 0
          && strcmp(why, "slurmjwt.conf:1: bad value for Clusters") == 0
          && c.clusters[0] == '\0', "Clusters: too long is refused");
}

#define MUNGE "/run/munge/munge.socket.2"
#define SACK "/run/slurm/sack.socket"
#define CTLD_SACK "/run/slurmctld/sack.socket"
#define CLUSTER_SACK "/run/slurm-big/sack.socket"   /* ClusterName=Big: Slurm lowers it */

/* mkdir -p of path's folder, then a listening socket at path (left behind). */
static void make_socket(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    char dir[300], *p;
    int fd;

    snprintf(dir, sizeof(dir), "%s", path);
    for (p = dir + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        mkdir(dir, 0700);
        *p = '/';
    }
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0) {
        bind(fd, (struct sockaddr *) &a, sizeof(a));
        close(fd);   /* the socket file stays, and a socket is all that is looked at */
    }
}

/*
 * One row: slurm.conf's text (NULL: none), up to two sockets present, the one
 * to be found (NULL: JWT is the only way in). Each row in a fresh root.
 */
static void rule(const char *conf, const char *s1, const char *s2, const char *want,
                 const char *name)
{
    struct wrap_conf c;
    char root[300], path[400], auth[64], found[400], cmd[400];
    FILE *f;
    int works;

    wrap_conf_defaults(&c);
    snprintf(root, sizeof(root), "%s/root", base);
    if (conf != NULL) {
        snprintf(path, sizeof(path), "%s/etc/slurm/slurm.conf", root);
        make_socket(path);   /* makes the folders; the file replaces the socket */
        unlink(path);
        if ((f = fopen(path, "w")) != NULL) {
            fprintf(f, "%s\nNodeName=n1 CPUs=2\n", conf);
            fclose(f);
        }
    }
    if (s1 != NULL) {
        snprintf(path, sizeof(path), "%s%s", root, s1);
        make_socket(path);
    }
    if (s2 != NULL) {
        snprintf(path, sizeof(path), "%s%s", root, s2);
        make_socket(path);
    }
    works = wrap_other_auth(&c, root, auth, sizeof(auth), found, sizeof(found));
    snprintf(path, sizeof(path), "%s%s", root, want ? want : "");
    check(want == NULL ? works == 0 && found[0] == '\0'
                       : works == 1 && strcmp(found, path) == 0, name);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", root);
}

/* The rule's table, row for row tests/unit/test_slurmconf.py's RULE. */
static void test_other_auth(void)
{
    struct wrap_conf c;
    char auth[64], found[400], path[400];
    FILE *f;

    unsetenv("SLURM_CONF");
    unsetenv("SLURM_SACK_SOCKET");
    rule("AuthType=auth/munge", MUNGE, NULL, MUNGE, "rule: auth/munge with munged");
    rule("AuthType=auth/munge", SACK, NULL, NULL, "rule: auth/munge with sackd only");
    rule("AuthType=auth/munge", NULL, NULL, NULL, "rule: auth/munge, no socket");
    rule("", MUNGE, NULL, MUNGE, "rule: no AuthType is auth/munge");
    rule("AuthType=auth/slurm", SACK, NULL, SACK, "rule: auth/slurm with sackd");
    rule("AuthType=auth/slurm", MUNGE, NULL, NULL, "rule: auth/slurm with munged only");
    rule("AuthType=auth/slurm", NULL, NULL, NULL, "rule: auth/slurm, no socket");
    rule("AuthType=auth/slurm", CTLD_SACK, NULL, CTLD_SACK, "rule: auth/slurm, slurmctld's");
    rule("AuthType=auth/slurm\nClusterName=Big", CLUSTER_SACK, SACK, CLUSTER_SACK,
         "rule: auth/slurm, the cluster's sackd first");
    rule("AuthType=auth/slurm\nClusterName=Big", SACK, NULL, SACK,
         "rule: auth/slurm, the cluster's sackd absent");
    rule("AuthType=\"auth/slurm\"\nClusterName=\"Big\"", CLUSTER_SACK, SACK, CLUSTER_SACK,
         "rule: quoted values, without their quotes");
    rule("AuthType=auth/slurm\nClusterName=other", CLUSTER_SACK, NULL, NULL,
         "rule: auth/slurm, another cluster's sackd");
    rule("AuthType=auth/none", MUNGE, SACK, NULL, "rule: another AuthType");
    rule(NULL, MUNGE, NULL, MUNGE, "rule: no slurm.conf, munged");
    rule(NULL, SACK, NULL, SACK, "rule: no slurm.conf, sackd");
    rule(NULL, NULL, NULL, NULL, "rule: no slurm.conf, no socket");

    /* AuthInfo's socket=, MungeSocket over it, SLURM_SACK_SOCKET alone, Include. */
    snprintf(path, sizeof(path), "%s/inc.conf", base);
    if ((f = fopen(path, "w")) != NULL) {
        fputs("AuthInfo=cred_expire=60, socket=" "/nonexistent/m.sock\n", f);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/slurm.conf", base);
    if ((f = fopen(path, "w")) != NULL) {
        fputs("AuthType=auth/munge\nInclude inc.conf\n", f);
        fclose(f);
    }
    wrap_conf_defaults(&c);
    snprintf(c.slurm_conf, sizeof(c.slurm_conf), "%s", path);
    snprintf(path, sizeof(path), "%s/m.sock", base);
    make_socket(path);
    check(wrap_other_auth(&c, base, auth, sizeof(auth), found, sizeof(found)) == 0
          && strcmp(auth, "auth/munge") == 0, "rule: AuthInfo's socket= (in an Include)");
    snprintf(c.munge_socket, sizeof(c.munge_socket), "%s", path);
    check(wrap_other_auth(&c, base, auth, sizeof(auth), found, sizeof(found)) == 1
          && strcmp(found, path) == 0, "rule: MungeSocket over AuthInfo");
    snprintf(path, sizeof(path), "%s/slurm.conf", base);
    if ((f = fopen(path, "w")) != NULL) {
        fputs("AuthType=auth/slurm\n", f);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/run/slurm/sack.socket", base);
    make_socket(path);
    setenv("SLURM_SACK_SOCKET", "/nonexistent/sack.socket", 1);
    check(wrap_other_auth(&c, base, auth, sizeof(auth), found, sizeof(found)) == 0,
          "rule: SLURM_SACK_SOCKET alone is tried");
    unsetenv("SLURM_SACK_SOCKET");
    check(wrap_other_auth(&c, base, auth, sizeof(auth), found, sizeof(found)) == 1
          && strcmp(found, path) == 0 && strcmp(auth, "auth/slurm") == 0,
          "rule: without it, sackd's default");
    snprintf(path, sizeof(path), "rm -rf '%s/run' '%s/m.sock' '%s/slurm.conf' '%s/inc.conf'",
             base, base, base, base);
    if (system(path) != 0)
        printf("# could not clean up\n");
}

int main(void)
{
    if (mkdtemp(base) == NULL)
        return 2;
    snprintf(file, sizeof(file), "%s/slurmjwt.conf", base);
    test_helper_timeout_bound();
    test_clusters();
    test_other_auth();
    if (geteuid() == 0)
        test_helper_timeout();
    else
        printf("# skipped: slurmjwt.conf must be root's; the file cases need root\n");
    unlink(file);
    rmdir(base);
    return report();
}
