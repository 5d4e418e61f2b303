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
# Where the tokens come from: sudo opens a PAM session for the user (Debian:
# /etc/pam.d/sudo includes common-session-noninteractive, where the
# pam-slurmjwt package's profile puts the module; RHEL: system-auth), so each
# sbatch, squeue and scancel the hub runs gets a fresh SLURM_JWT from it. No
# sudoers change: sudo's secure_path finds the real commands, which need
# nothing but that token. Inside the job the TaskProlog (packaging/slurm/)
# removes SLURM_JWT and Slurm's own authentication (munge) works, so the
# server's terminals and notebooks run squeue and sbatch for as long as the
# job lives, however short the token's Lifespan.

import os
import socket
import sys

c = get_config()  # noqa: F821 (JupyterHub defines it)

# Passwords through PAM (service "login"), and a PAM session for each user
# while their server runs, as batchspawner's sites do. The tokens do not
# depend on it: they come from sudo's sessions, below.
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = True

c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
# batchspawner's defaults, written out: these are the commands sudo's PAM
# session gives a token to.
c.SlurmSpawner.exec_prefix = "sudo -E -u {username}"
c.SlurmSpawner.batch_submit_cmd = "sbatch --parsable"
c.SlurmSpawner.batch_query_cmd = "squeue -h -j {job_id} -o '%T %B'"
c.SlurmSpawner.batch_cancel_cmd = "scancel {job_id}"
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
