/*
 * clusters.h - which clusters a Slurm command will send this login node's
 * token to, read from its argv (-M/--clusters), SLURM_CLUSTERS or slurm.conf's
 * ClusterName, and whether slurmjwt.conf's Clusters= takes them all.
 */
#ifndef SLURMJWT_WRAP_CLUSTERS_H
#define SLURMJWT_WRAP_CLUSTERS_H

#include <stddef.h>

/*
 * True when NAME's token goes to slurmctld of the clusters it names. Not so
 * for sacct, sacctmgr and sreport: they ask slurmdbd alone, whatever
 * cluster their -M (or cluster=) names.
 */
int wrap_cluster_command(const char *name);

/*
 * The value of the last -M X, -MX, --clusters=X, --clusters X, --cluster=X or
 * --cluster X in argv[1..argc-1] (argv is not changed), as getopt would find
 * it for the command NAME: the scan stops at "--" and, for sbatch, salloc and
 * srun, at the script or command (the first word that is not an option or
 * the value of one; options not known to take no value are taken to take
 * one). Return it, or NULL when there is none.
 */
const char *wrap_argv_clusters(const char *name, int argc, char *const argv[]);

/*
 * The clusters the environment names for the command NAME, as Slurm reads
 * it: SLURM_CLUSTERS (for the commands that read it: salloc, sbatch,
 * scancel, scontrol, sdiag, sinfo, sprio, squeue, srun), else (sbatch, salloc) SBATCH_CLUSTERS or
 * SALLOC_CLUSTERS, which SLURM_CLUSTERS overrides there. NULL when none
 * is set or it is empty.
 */
const char *wrap_env_clusters(const char *name);

/*
 * Given Clusters= (lower case, comma-separated, no blanks) and a cluster list
 * as Slurm takes it (comma-separated, any case), return 1 with the first
 * listed cluster that Clusters= lacks in out; 0 when all are in it, when the
 * list is empty or names "all" (which only slurmdbd can resolve).
 */
int wrap_cluster_outside(const char *allowed, const char *list, char *out, size_t outlen);

#endif /* SLURMJWT_WRAP_CLUSTERS_H */
