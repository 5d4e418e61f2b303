/*
 * conf.h - the slurmjwt.conf keys the Slurm command wrapper needs, read with
 * the checks pam_slurmjwt/config.py applies (root's file, not writable by
 * others, no symlink) and the same defaults.
 */
#ifndef SLURMJWT_WRAP_CONF_H
#define SLURMJWT_WRAP_CONF_H

#include <limits.h>
#include <stddef.h>

enum wrap_export { EXPORT_AUTO, EXPORT_ALWAYS, EXPORT_NEVER };

struct wrap_conf {
    char helper_socket[108];        /* sun_path's size */
    long long helper_timeout_ms;
    char slurm_bin_dir[PATH_MAX];
    char munge_socket[PATH_MAX];    /* "": slurm.conf's AuthInfo=socket=, else munged's default */
    char slurm_conf[PATH_MAX];      /* "": Slurm's default places; $SLURM_CONF goes first */
    long long min_uid;
    enum wrap_export export_mode;
    char clusters[4096];            /* Clusters=: lower case, "a,b"; "": no check */
};

/* Fill *c with the defaults of pam_slurmjwt/config.py. */
void wrap_conf_defaults(struct wrap_conf *c);

/*
 * Given the text of a slurmjwt.conf (changed in place) and the file name to
 * put in messages, fill *c with the keys above over the defaults and return
 * 0; or return -1 with why filled in ("file:line: ...") and the defaults in
 * *c. No file is read: the checks on the file are wrap_conf_load's.
 */
int wrap_conf_parse(struct wrap_conf *c, char *text, const char *file, char *why,
                    size_t whylen);

/*
 * Read the keys above from the file at path into *c (unset keys keep their
 * defaults; others are ignored) and return 0; a missing file is no error.
 * Return -1 with why filled in when the file is unsafe or a value is bad;
 * *c then holds the defaults.
 */
int wrap_conf_load(struct wrap_conf *c, const char *path, char *why, size_t whylen);

/*
 * The Export=auto rule of pam_slurmjwt/slurmconf.py (auth_sockets, other_auth):
 * does Slurm have another way in than JWT here? Read the slurm.conf Slurm's
 * commands read ($SLURM_CONF, else SlurmConf, else /etc/slurm/slurm.conf, else
 * the configless /run/slurm/conf/slurm.conf), following Include lines; for
 * AuthType=auth/munge look at munged's socket (MungeSocket, else AuthInfo's
 * socket=, else /run/munge/munge.socket.2), for auth/slurm at sackd's
 * ($SLURM_SACK_SOCKET alone when set, else /run/slurm-CLUSTER/sack.socket,
 * /run/slurm, /run/slurmctld, /run/slurmdbd's sack.socket), for any other
 * type at none; with no readable slurm.conf, at munged's and sackd's alike.
 * Return 1 with the socket found in found (and AuthType in auth, "" when no
 * slurm.conf was read), or 0. root prefixes the fixed paths, for tests ("").
 */
int wrap_other_auth(const struct wrap_conf *c, const char *root, char *auth, size_t authlen,
                    char *found, size_t foundlen);

/*
 * The ClusterName (lower case, as Slurm keeps it) of the slurm.conf Slurm's
 * commands read (as wrap_other_auth finds it, Include lines followed) into
 * out; 0, or -1 when none is readable or it sets no ClusterName.
 */
int wrap_cluster_name(const struct wrap_conf *c, char *out, size_t outlen);

#endif /* SLURMJWT_WRAP_CONF_H */
