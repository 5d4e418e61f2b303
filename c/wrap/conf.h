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
    char munge_socket[PATH_MAX];
    long long min_uid;
    enum wrap_export export_mode;
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

#endif /* SLURMJWT_WRAP_CONF_H */
