/*
 * test_clusters.c - C unit tests of ../wrap/clusters.c: the clusters a Slurm
 * command names in its argv, form by form (a table), and the check against
 * Clusters=. The wrapper's integration (SLURM_CLUSTERS, ClusterName, the one
 * line) is tests/integration/test_clusters.py's.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../wrap/clusters.h"
#include "check.h"

#define MAX_WORDS 8

struct form {
    const char *command;
    const char *words[MAX_WORDS];   /* argv[1..], NULL-terminated */
    const char *want;               /* NULL: no cluster named */
};

static const struct form FORMS[] = {
    { "squeue", { "-M", "a" }, "a" },
    { "squeue", { "-Mb" }, "b" },
    { "squeue", { "--clusters=a,b" }, "a,b" },
    { "squeue", { "--clusters", "c" }, "c" },
    { "scontrol", { "--cluster=c", "ping" }, "c" },
    { "scontrol", { "--cluster", "c", "ping" }, "c" },
    { "squeue", { "-M", "a", "-M", "c" }, "c" },             /* the last wins, as getopt's */
    { "squeue", { "-u", "me", "-h", "-M", "b" }, "b" },
    { "scancel", { "12", "-M", "c" }, "c" },                  /* getopt permutes: still ours */
    { "squeue", { "-h" }, NULL },
    { "squeue", { "--", "-M", "c" }, NULL },                  /* after --: not an option */
    { "squeue", { "-M" }, NULL },                             /* no value: Slurm's error */
    { "squeue", { "--cluster-constraint=c" }, NULL },         /* another option */
    { "squeue", { "--clust=c" }, NULL },                      /* abbreviated: left to Slurm */
    { "squeue", { "-hM", "c" }, NULL },                       /* bundle, flags unknown here */
    { "sbatch", { "-M", "b", "--wrap", "hostname" }, "b" },
    { "sbatch", { "--stepmgr", "job.sh", "-M", "c" }, NULL },    /* newer flags: the script's -M */
    { "sbatch", { "--whole", "job.sh", "-M", "c" }, NULL },
    { "sbatch", { "--export", "NONE", "-M", "c", "job.sh" }, "c" },  /* --export takes a value */
    { "srun", { "-W", "30", "-M", "c", "hostname" }, "c" },   /* srun's -W takes one */
    { "srun", { "--wait", "30", "-M", "c", "hostname" }, "c" },
    { "sbatch", { "-W", "job.sh", "-M", "c" }, NULL },         /* sbatch's -W does not */
    { "sbatch", { "-p", "debug", "-M", "c", "job.sh" }, "c" },
    { "sbatch", { "--partition", "debug", "--clusters", "c", "job.sh" }, "c" },
    { "sbatch", { "job.sh", "-M", "c" }, NULL },              /* the script's arguments */
    { "sbatch", { "--parsable", "job.sh", "-M", "c" }, NULL }, /* a flag, then the script */
    { "sbatch", { "-W", "job.sh", "-M", "c" }, NULL },
    { "sbatch", { "-vM", "c", "job.sh" }, "c" },              /* flags bundled before M */
    { "sbatch", { "-vMc", "job.sh" }, "c" },
    { "sbatch", { "-n4", "job.sh", "-M", "c" }, NULL },       /* a value attached */
    { "sbatch", { "-pM", "job.sh" }, NULL },                  /* -p's value is "M" */
    { "srun", { "-n", "2", "gcc", "-M", "x.c" }, NULL },      /* gcc's -M */
    { "srun", { "-l", "--pty", "bash", "-M", "c" }, NULL },
    { "srun", { "-M", "a", "hostname" }, "a" },
    { "salloc", { "--no-shell", "-M", "b" }, "b" },
    { "sacct", { "-M", "c" }, "c" },                          /* read; not checked (below) */
};

static void test_forms(void)
{
    char *argv[MAX_WORDS + 2], name[200];
    const char *got;
    size_t i, n;

    for (i = 0; i < sizeof(FORMS) / sizeof(FORMS[0]); i++) {
        argv[0] = (char *) FORMS[i].command;
        for (n = 0; n < MAX_WORDS && FORMS[i].words[n] != NULL; n++)
            argv[n + 1] = (char *) FORMS[i].words[n];
        argv[n + 1] = NULL;
        got = wrap_argv_clusters(FORMS[i].command, (int) n + 1, argv);
        snprintf(name, sizeof(name), "argv: %s %s%s%s%s -> %s", FORMS[i].command,
                 FORMS[i].words[0] ? FORMS[i].words[0] : "",
                 FORMS[i].words[1] ? " " : "", FORMS[i].words[1] ? FORMS[i].words[1] : "",
                 FORMS[i].words[2] ? " ..." : "", FORMS[i].want ? FORMS[i].want : "none");
        check(FORMS[i].want == NULL ? got == NULL
                                    : got != NULL && strcmp(got, FORMS[i].want) == 0, name);
    }
}

static void test_outside(void)
{
    char out[200] = "";

    check(wrap_cluster_outside("a,b", "a", out, sizeof(out)) == 0, "outside: a of a,b");
    check(wrap_cluster_outside("a,b", "B,a", out, sizeof(out)) == 0, "outside: any case");
    check(wrap_cluster_outside("a,b", "a,c", out, sizeof(out)) == 1 && strcmp(out, "c") == 0,
          "outside: a,c names c");
    check(wrap_cluster_outside("a,b", "ab", out, sizeof(out)) == 1 && strcmp(out, "ab") == 0,
          "outside: a prefix is not a name");
    check(wrap_cluster_outside("ab", "a", out, sizeof(out)) == 1 && strcmp(out, "a") == 0,
          "outside: nor is a part of one");
    check(wrap_cluster_outside("a,b", "all", out, sizeof(out)) == 0, "outside: all passes");
    check(wrap_cluster_outside("a,b", "c,ALL", out, sizeof(out)) == 0,
          "outside: a list with all passes");
    check(wrap_cluster_outside("a,b", "", out, sizeof(out)) == 0, "outside: nothing named");
    check(wrap_cluster_outside("a,b", ",a,", out, sizeof(out)) == 0, "outside: empty items");
    check(wrap_cluster_command("squeue") && wrap_cluster_command("sbatch")
          && !wrap_cluster_command("sacct") && !wrap_cluster_command("sacctmgr")
          && !wrap_cluster_command("sreport"), "commands: slurmdbd's alone are not checked");
}

static void test_environment(void)
{
    const char *got;

    unsetenv("SLURM_CLUSTERS");
    setenv("SBATCH_CLUSTERS", "c", 1);
    setenv("SALLOC_CLUSTERS", "d", 1);
    got = wrap_env_clusters("sbatch");
    check(got != NULL && strcmp(got, "c") == 0, "environment: SBATCH_CLUSTERS for sbatch");
    got = wrap_env_clusters("salloc");
    check(got != NULL && strcmp(got, "d") == 0, "environment: SALLOC_CLUSTERS for salloc");
    check(wrap_env_clusters("squeue") == NULL, "environment: not for squeue");
    setenv("SLURM_CLUSTERS", "c", 1);
    check(wrap_env_clusters("sshare") == NULL, "environment: sshare reads no SLURM_CLUSTERS");
    unsetenv("SLURM_CLUSTERS");
    setenv("SLURM_CLUSTERS", "b", 1);
    got = wrap_env_clusters("sbatch");
    check(got != NULL && strcmp(got, "b") == 0, "environment: SLURM_CLUSTERS over SBATCH_CLUSTERS");
    got = wrap_env_clusters("squeue");
    check(got != NULL && strcmp(got, "b") == 0, "environment: SLURM_CLUSTERS for squeue");
    setenv("SLURM_CLUSTERS", "", 1);
    got = wrap_env_clusters("sbatch");
    check(got != NULL && strcmp(got, "c") == 0, "environment: an empty SLURM_CLUSTERS is none");
    unsetenv("SLURM_CLUSTERS");
    unsetenv("SBATCH_CLUSTERS");
    unsetenv("SALLOC_CLUSTERS");
    check(wrap_env_clusters("sbatch") == NULL, "environment: none set");
}

int main(void)
{
    test_forms();
    test_environment();
    test_outside();
    return report();
}
