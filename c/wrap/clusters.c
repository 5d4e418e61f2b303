/*
 * clusters.c - the clusters a Slurm command names, read as its getopt would,
 * and the check against slurmjwt.conf's Clusters= (docs/internals.md, "The
 * Slurm command wrappers"). Forms it cannot resolve (abbreviated long
 * options, "all") are left to Slurm: a miss costs Slurm's own error, a wrong
 * refusal a command that would have worked.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clusters.h"

#define CLUSTER_MAX 128

/* Commands whose token reaches slurmdbd only: -M names whose jobs, not whom to ask. */
static const char *const DBD_ONLY[] = { "sacct", "sacctmgr", "sreport" };

/* Commands that read SLURM_CLUSTERS (Slurm 22.05 to 26.05); the others go to their own cluster. */
static const char *const ENV_READERS[] = {
    "salloc", "sbatch", "scancel", "scontrol", "sdiag", "sinfo", "sprio", "squeue", "srun",
};

/* Commands whose getopt stops at the script or program they run (the "+" of their optstring). */
static const char *const OPERANDS[] = { "sbatch", "salloc", "srun" };

/*
 * The options of sbatch, salloc and srun that take no value, or an optional
 * one that must be attached (Slurm 22.05 to 26.05, src/common/slurm_opt.c and
 * their --help). Any other option is taken to take one: the word after it is
 * its value, not the script. A flag missing here makes the script's own
 * arguments look like options; one listed wrongly only stops the scan early.
 * srun's -W/--wait takes a value (sbatch's and salloc's do not).
 */
static const char SHORT_FLAGS[] = "EHIKOQVWXZhklsuv";
static const char *const LONG_FLAGS[] = {
    "async", "bcast", "bell", "compress", "consolidate-segments", "contiguous",
    "debugger-test", "disable-status", "exact", "exclusive", "external",
    "external-launcher", "get-user-env", "help", "hold", "ignore-pbs", "immediate",
    "interactive", "kill-command", "kill-on-bad-exit", "label", "multi-prog", "nice",
    "no-allocate", "no-bell", "no-kill", "no-requeue", "no-shell", "oom-kill-step",
    "overcommit", "overlap", "oversubscribe", "parsable", "preserve-env", "propagate", "pty",
    "quiet", "quit-on-interrupt", "reboot", "requeue", "resv-ports", "send-libs",
    "spread-job", "spread-segments", "stepmgr", "test-only", "unbuffered", "usage",
    "use-min-nodes", "verbose", "version", "wait", "wait-for-children", "whole", "x11",
};

static int listed(const char *const *list, size_t n, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strlen(list[i]) == len && strncmp(list[i], name, len) == 0)
            return 1;
    return 0;
}

#define LISTED(list, name, len) listed(list, sizeof(list) / sizeof(list[0]), name, len)

int wrap_cluster_command(const char *name)
{
    return !LISTED(DBD_ONLY, name, strlen(name));
}

/* "--clusters" or "--cluster", alone or with "=VALUE": 1, with *value set (NULL: the next word). */
static int clusters_option(const char *word, const char **value)
{
    static const char *const names[] = { "--clusters", "--cluster" };
    size_t i, n;

    for (i = 0; i < 2; i++) {
        n = strlen(names[i]);
        if (strncmp(word, names[i], n) == 0 && (word[n] == '\0' || word[n] == '=')) {
            *value = word[n] == '=' ? word + n + 1 : NULL;
            return 1;
        }
    }
    return 0;
}

/* Whether the short option c takes no value for the command. */
static int short_flag(int srun, char c)
{
    return strchr(SHORT_FLAGS, c) != NULL && !(srun && c == 'W');
}

/* For a command with operands: does the option word take the next word as its value? */
static int takes_next(int srun, const char *word)
{
    const char *eq, *p;

    if (word[1] == '-') {
        eq = strchr(word, '=');
        if (eq != NULL)
            return 0;
        if (srun && strcmp(word + 2, "wait") == 0)
            return 1;
        return !LISTED(LONG_FLAGS, word + 2, strlen(word + 2));
    }
    /* A bundle of short options: the first that takes a value takes the rest, if any. */
    for (p = word + 1; *p != '\0'; p++)
        if (!short_flag(srun, *p))
            return p[1] == '\0';
    return 0;
}

const char *wrap_argv_clusters(const char *name, int argc, char *const argv[])
{
    int operands = LISTED(OPERANDS, name, strlen(name)), srun = strcmp(name, "srun") == 0, i;
    const char *found = NULL, *value, *word, *p;

    for (i = 1; i < argc; i++) {
        word = argv[i];
        if (strcmp(word, "--") == 0)
            break;
        if (word[0] != '-' || word[1] == '\0') {
            if (operands)
                break;   /* the script or program: what follows is its own */
            continue;
        }
        if (clusters_option(word, &value)) {
            if (value == NULL && ++i < argc)
                value = argv[i];
            if (value != NULL)
                found = value;
            continue;
        }
        if (word[1] != '-') {
            /* -M, -MX, and (with operands, where flags are known) -vM X, -vMX. */
            for (p = word + 1; *p != '\0'; p++) {
                if (*p == 'M') {
                    if (p[1] != '\0')
                        found = p + 1;
                    else if (++i < argc)
                        found = argv[i];
                    break;
                }
                if (!operands || !short_flag(srun, *p))
                    break;
            }
            if (*p == 'M')
                continue;
        }
        if (operands && takes_next(srun, word))
            i++;
    }
    return found;
}

const char *wrap_env_clusters(const char *name)
{
    const char *list;

    if (!LISTED(ENV_READERS, name, strlen(name)))
        return NULL;
    list = getenv("SLURM_CLUSTERS");
    /* sbatch and salloc read their own variable first, then SLURM_CLUSTERS over it. */
    if ((list == NULL || list[0] == '\0') && strcmp(name, "sbatch") == 0)
        list = getenv("SBATCH_CLUSTERS");
    if ((list == NULL || list[0] == '\0') && strcmp(name, "salloc") == 0)
        list = getenv("SALLOC_CLUSTERS");
    return list != NULL && list[0] != '\0' ? list : NULL;
}

/* Whether name (len bytes, any case) is an item of allowed. */
static int allows(const char *allowed, const char *name, size_t len)
{
    const char *item = allowed, *end;

    for (; *item != '\0'; item = *end ? end + 1 : end) {
        end = item + strcspn(item, ",");
        if ((size_t) (end - item) == len && strncasecmp(item, name, len) == 0)
            return 1;
    }
    return 0;
}

int wrap_cluster_outside(const char *allowed, const char *list, char *out, size_t outlen)
{
    const char *item, *end;
    size_t len;

    if (allows(list, "all", 3))
        return 0;
    for (item = list; *item != '\0'; item = *end ? end + 1 : end) {
        end = item + strcspn(item, ",");
        len = (size_t) (end - item);
        if (len == 0 || allows(allowed, item, len))
            continue;
        if (len > CLUSTER_MAX)
            len = CLUSTER_MAX;
        snprintf(out, outlen, "%.*s", (int) len, item);
        return 1;
    }
    return 0;
}
