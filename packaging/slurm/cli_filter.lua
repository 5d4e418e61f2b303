--[[
cli_filter.lua - keep SLURM_JWT out of what sbatch submits and out of the
command salloc starts. For every Slurm release from 22.05
(CliFilterPlugins=cli_filter/lua, package lua-posix on submit hosts).

A job that carries SLURM_JWT cannot run srun (slurmd takes no JWT; 26.05's
srun refuses to start), and slurmctld stores the token with the job
(StateSaveLocation/hash.N/job.ID/environment, which slurmdbd keeps with
AccountingStoreFlags=job_env). sbatch and salloc copy their environment into
the job whatever --export says (every mode copies SLURM_*), and salloc runs
its command (a shell) with its own environment.

A Slurm client reads SLURM_JWT once, when it loads its auth/jwt plugin, and
keeps that token. So the token is removed from the process only once
auth_jwt.so is loaded: from 23.11 that is before any cli_filter runs, so
sbatch and salloc drop it in slurm_cli_pre_submit and still authenticate
with it; 22.05 loads the plugin later, on its first request, so there
sbatch (which has none before it submits) keeps the token, and salloc drops
it in slurm_cli_post_submit, after its allocation and before it starts its
command. Unsetting it earlier on 22.05 would make the command fall back to
munge.

The TaskProlog (taskprolog.sh) removes the token from every task whatever
reached the job (--export-file, --get-user-env, a user's own slurm.conf):
configure both.

Install: with CliFilterPlugins=cli_filter/lua in slurm.conf, every host that
runs sbatch, salloc or srun loads this file, compute nodes included: put it
as cli_filter.lua beside slurm.conf on every such host (a host without it
fails every srun with "failed to initialize cli_filter plugin"), with
lua-posix on submit hosts. To merge it into an existing cli_filter.lua, copy
drop_token and the calls to it into yours.
--]]

-- pcall: a host without lua-posix (a compute node running srun) must not
-- fail every command; only sbatch and salloc on a submit host need it.
local have_posix, stdlib = pcall(require, "posix.stdlib")

-- What this process is: sbatch, salloc or srun (set in pre_submit).
local command = nil

-- True when this process has loaded Slurm's auth/jwt plugin, which has then
-- read SLURM_JWT and keeps it.
local function jwt_plugin_loaded()
	local maps = io.open("/proc/self/maps", "r")
	if maps == nil then
		return false
	end
	local text = maps:read("*a")
	maps:close()
	return text ~= nil and text:find("/auth_jwt.so", 1, true) ~= nil
end

local function drop_token()
	if have_posix and stdlib.getenv("SLURM_JWT") ~= nil and jwt_plugin_loaded() then
		stdlib.setenv("SLURM_JWT", nil)
	end
end

function slurm_cli_setup_defaults(options, early_pass)
	return slurm.SUCCESS
end

function slurm_cli_pre_submit(options, pack_offset)
	command = options["type"]
	if command == "sbatch" or command == "salloc" then
		drop_token()
	end
	return slurm.SUCCESS
end

function slurm_cli_post_submit(offset, job_id, step_id)
	if command == "salloc" then
		drop_token()
	end
	return slurm.SUCCESS
end
