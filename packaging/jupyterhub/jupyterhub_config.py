# jupyterhub_config.py - JupyterHub on a pam-slurmjwt login node: password
# logins through PAM, each user's server a Slurm job (batchspawner's
# SlurmSpawner). tests/integration/test_jupyterhub.py runs this file as it
# is, adding only its ports and state paths; README, "JupyterHub".
#
# Tested with the versions in requirements.txt beside this file and
# configurable-http-proxy 4.6.3 (npm). The hub runs as root: PAM checks other
# users' passwords, and batchspawner runs every Slurm command as the user
# with `sudo -E -u USER`, which root may do without a sudoers line.
#
# Where the tokens come from: batchspawner runs sbatch, squeue and scancel as
# the user through sudo, here by the wrappers' paths, so each gets a live
# SLURM_JWT from the user's cache or the helper (the cache is
# /run/slurmjwt/users/UID, which slurmjwt-userdir.socket makes: sudo's
# session has no runtime directory). Neither a sudoers change nor the
# module in sudo's PAM stack is needed. Inside the job the TaskProlog
# (packaging/slurm/)
# removes SLURM_JWT and Slurm's own authentication (munge) works, so the
# server's terminals and notebooks run squeue and sbatch for as long as the
# job lives, however short the token's Lifespan.

import os
import socket
import sys

c = get_config()  # noqa: F821 (JupyterHub defines it)

# Passwords through PAM (service "login"), and a PAM session for each user
# while their server runs, as batchspawner's sites do. The tokens do not
# depend on it: the wrappers get them, below.
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = True

c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
# batchspawner's defaults, with the commands named by the wrappers' paths
# (sudo's secure_path would find the real ones, which have no token).
WRAPPERS = "/usr/lib/slurmjwt/bin"
c.SlurmSpawner.exec_prefix = "sudo -E -u {username}"
c.SlurmSpawner.batch_submit_cmd = f"{WRAPPERS}/sbatch --parsable"
c.SlurmSpawner.batch_query_cmd = f"{WRAPPERS}/squeue -h -j {{job_id}} -o '%T %B'"
c.SlurmSpawner.batch_cancel_cmd = f"{WRAPPERS}/scancel {{job_id}}"
# The job inherits sudo's PATH (secure_path): name the server's programs by
# their full path, in this hub's own environment (shared with the compute
# nodes).
BIN = os.path.join(sys.prefix, "bin")
c.SlurmSpawner.batchspawner_singleuser_cmd = os.path.join(BIN, "batchspawner-singleuser")
c.Spawner.cmd = [os.path.join(BIN, "jupyterhub-singleuser")]
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 120

# The servers on the compute nodes call the hub's API at this host's name.
c.JupyterHub.hub_ip = "0.0.0.0"  # noqa: S104 (the compute nodes must reach it)
c.JupyterHub.hub_connect_ip = socket.gethostname()
