"""pam-slurmjwt: Slurm JSON Web Tokens for every login-node session."""

__version__ = "0.3.0"
