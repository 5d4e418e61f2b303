--[[
cli_filter.lua - keep SLURM_JWT out of the environment sbatch submits.
For Slurm 24.11 and later (CliFilterPlugins=cli_filter/lua, package lua-posix).

Before Slurm 26.05, sbatch copies SLURM_JWT into the job: it is stored with
the job (scontrol show job -dd, slurmdbd job_env) and breaks srun inside it.
Unsetting it here, in sbatch's own process before the job is built, keeps it
out while sbatch itself still authenticates with it (verified on 24.11).
The TaskProlog (taskprolog.sh) stays useful as a second line of defence.

Not for 22.05-24.05: there the same unset makes sbatch lose its token and
fall back to munge (see packaging/slurm/README.md). 26.05 scrubs SLURM_JWT
from jobs itself; this script is then harmless but unnecessary.

Install: with CliFilterPlugins=cli_filter/lua in slurm.conf, every host
that runs sbatch, salloc or srun loads this file - compute nodes included,
since jobs run srun there: put it as cli_filter.lua beside slurm.conf on
every such host (seen on 24.11: a host without it fails every srun with
"failed to initialize cli_filter plugin"), with lua-posix on submit hosts.
To merge into an existing cli_filter.lua, add the body of
slurm_cli_pre_submit below to yours.
--]]

-- pcall: a host without lua-posix (a compute node running srun) must not
-- fail every command; only sbatch on a submit host needs the unset.
local have_posix, stdlib = pcall(require, "posix.stdlib")

function slurm_cli_setup_defaults(options, early_pass)
	return slurm.SUCCESS
end

function slurm_cli_pre_submit(options, pack_offset)
	if options["type"] == "sbatch" and have_posix then
		stdlib.setenv("SLURM_JWT", nil)
	end
	return slurm.SUCCESS
end

function slurm_cli_post_submit(offset, job_id, step_id)
	return slurm.SUCCESS
end
