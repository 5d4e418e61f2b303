"""The Slurm releases the demo can build, each with what that Slurm needs: one
row per release, so a compatibility matrix is a loop.

Three rows are Debian releases and use Debian's own Slurm packages; four are
Slurm releases no Debian release ships, built from SchedMD's release tarballs
on Debian bookworm (tests/demo/sources.py). Each row says how to reach that
Slurm's slurmrestd, what the site configures on the Slurm side to keep
SLURM_JWT out of jobs (packaging/slurm/README.md), and the behaviour of that
version the tests hold the project to.
"""

from __future__ import annotations

from dataclasses import dataclass

TASKPROLOG = "TaskProlog=/usr/lib/slurmjwt/taskprolog.sh"
CLI_FILTER = "CliFilterPlugins=cli_filter/lua"
# What the README tells every site to configure, whatever its Slurm release:
# the TaskProlog cleans every task, the cli_filter (with lua-posix for it)
# cleans what sbatch submits and salloc's shell.
BOTH = (TASKPROLOG, CLI_FILTER)
LUA_POSIX = ("lua-posix",)
# slurmrestd's plugins from 23.11 on: slurmctld's endpoints and slurmdbd's.
RESTD = "openapi/slurmctld,openapi/slurmdbd"


@dataclass(frozen=True)
class SlurmSide:
    """What a site running this Slurm configures so that SLURM_JWT never breaks
    srun in a job: lines added to slurm.conf on every host, and Debian packages
    every host needs. With CLI_FILTER among the lines, the entrypoints link
    /etc/slurm/cli_filter.lua to the project's /usr/lib/slurmjwt/cli_filter.lua
    (srun loads the filter too, so the controller needs it as well)."""

    conf: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()

    @property
    def cli_filter(self) -> bool:
        return CLI_FILTER in self.conf

    @property
    def task_prolog(self) -> bool:
        return TASKPROLOG in self.conf


@dataclass(frozen=True)
class Source:
    """A Slurm release no Debian release ships: SchedMD's release tag, exported
    with `git archive` and compressed with xz as slurm-<version>.tar.xz (its top
    folder slurm-<version>/), pinned by its sha256, and the Debian release whose
    libraries it is built against."""

    version: str
    tag: str
    commit: str
    sha256: str
    debian: str = "bookworm"

    @property
    def tarball(self) -> str:
        return f"slurm-{self.version}.tar.xz"


@dataclass(frozen=True)
class Release:
    """One Slurm release: its name (a Debian codename, or slurm-X.Y for a source
    build), the Slurm version, how to reach its slurmrestd (plugins for `-s`,
    the newest API's URL path), its Slurm side, and what that Slurm does that the
    tests rely on."""

    codename: str
    slurm: str
    restd_plugins: str
    restd_api: str
    slurm_side: SlurmSide
    # slurmrestd takes `Authorization: Bearer` (23.02+).
    bearer: bool
    # slurmctld refuses to start with a key file that has any "other" bit (23.11+).
    refuses_open_key: bool
    # sbatch itself keeps SLURM_JWT out of a job on its default export and out
    # of an --export-file (26.05+), and srun refuses to start with it (26.05+).
    scrubs_jwt: bool
    # With the Slurm side configured, slurmctld still stores SLURM_JWT with a job
    # submitted with the whole environment: 22.05's sbatch reads the token only
    # after the cli_filter ran, so the filter must leave it in place there.
    stores_token: bool
    # What slurmdbd keeps of SLURM_JWT with the same job (AccountingStoreFlags=
    # job_env, `sacct --env-vars`), observed.
    dbd_keeps_token: bool
    # What `sbatch --export-file` does on a host where JWT is the only way in:
    # "yes" it works; "no" 23.11 has no such option (removed in 23.11.0, back in
    # 24.05); "munge" 22.05 clears its environment, the token with it, before it
    # first authenticates, and then tries munge.
    export_file: str = "yes"
    # Built from this tarball instead of installed from Debian's archive.
    source: Source | None = None
    # Its systemd (258+) runs only on a cgroup v2 host: on a cgroup v1 host
    # (like the test machines) the login node cannot boot it as PID 1.
    cgroup2_only: bool = False

    @property
    def srun_refuses_jwt(self) -> bool:
        return self.scrubs_jwt

    @property
    def auth_slurm(self) -> bool:
        """Slurm has auth/slurm and sackd (23.11+). Such a release's cluster runs
        AuthType=auth/slurm and CredType=auth/slurm (slurm.key on the controller
        and the sackd login node; tests/demo/sackd.py), munge on none of its
        hosts' Slurm paths; AuthAltTypes=auth/jwt stays for the JWT-only login
        node and slurmrestd."""
        return self.version >= (23, 11)

    @property
    def sattach_through_sackd(self) -> bool:
        """sattach works on a sackd node without slurm.key (24.05+); 23.11's
        exits with `fatal: auth/slurm: Could not load key file` (seen on
        23.11.11)."""
        return self.version >= (24, 5)

    @property
    def sackd_packages(self) -> tuple[str, ...]:
        """Debian's packages the login image needs for sackd (a source build
        installs sackd with the rest of Slurm)."""
        return ("sackd",) if self.auth_slurm and self.source is None else ()

    @property
    def restd_ping(self) -> str:
        return f"{self.restd_api}/ping"

    @property
    def restd_db_associations(self) -> str:
        # slurmdbd's endpoints (openapi/dbv0.0.38, openapi/slurmdbd): the
        # same data parser's version under /slurmdb.
        return f"{self.restd_api.replace('/slurm/', '/slurmdb/', 1)}/associations"

    @property
    def restd_jobs(self) -> str:
        # Unlike ping, listing jobs needs slurmctld to accept the token (511 otherwise).
        return f"{self.restd_api}/jobs"

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.slurm.split(".")[:2]
        return int(major), int(minor)

    @property
    def debian(self) -> str:
        """The Debian release the images start from."""
        return self.source.debian if self.source else self.codename


RELEASES: dict[str, Release] = {
    r.codename: r
    for r in (
        # 22.05: the accounting endpoints are a plugin of their own (dbv0.0.38).
        Release("bookworm", "22.05.8", "openapi/v0.0.38,openapi/dbv0.0.38", "/slurm/v0.0.38",
                SlurmSide(conf=BOTH, packages=LUA_POSIX),
                bearer=False, refuses_open_key=False, scrubs_jwt=False, stores_token=True,
                dbd_keeps_token=True,
                export_file="munge"),
        Release("slurm-23.11", "23.11.11", RESTD, "/slurm/v0.0.40",
                SlurmSide(conf=BOTH, packages=LUA_POSIX),
                bearer=True, refuses_open_key=True, scrubs_jwt=False, stores_token=False,
                dbd_keeps_token=False,
                export_file="no",
                source=Source("23.11.11", "slurm-23-11-11-1",
                              "8a22252e33d444bbb918a476985e0ff746a19fde",
                              "d70e3e50403965ede5449493c73b2bad8a115927a425cbd393a3b473c54578dd")),
        Release("slurm-24.05", "24.05.8", RESTD, "/slurm/v0.0.41",
                SlurmSide(conf=BOTH, packages=LUA_POSIX),
                bearer=True, refuses_open_key=True, scrubs_jwt=False, stores_token=False,
                dbd_keeps_token=False,
                source=Source("24.05.8", "slurm-24-05-8-1",
                              "46879dc2d172fd362745d21730a6846888d10157",
                              "b1b1549ee80fbcd2e4a3b40f17b0e794f92893b6e059d32d964d8db92c399b0e")),
        # 24.11 serves every data parser (v0.0.40-42) through openapi/slurmctld.
        Release("trixie", "24.11.5", RESTD, "/slurm/v0.0.42",
                SlurmSide(conf=BOTH, packages=LUA_POSIX),
                bearer=True, refuses_open_key=True, scrubs_jwt=False, stores_token=False,
                dbd_keeps_token=False),
        Release("slurm-25.05", "25.05.8", RESTD, "/slurm/v0.0.43",
                SlurmSide(conf=BOTH, packages=LUA_POSIX),
                bearer=True, refuses_open_key=True, scrubs_jwt=False, stores_token=False,
                dbd_keeps_token=False,
                source=Source("25.05.8", "slurm-25-05-8-1",
                              "90ff1dd4058b3ec2df25306a3917650efa59537f",
                              "31243560efb36d74505d2706701412209b2a21e9951e60889416c412e89926f6")),
        Release("slurm-25.11", "25.11.7", RESTD, "/slurm/v0.0.44",
                SlurmSide(conf=BOTH, packages=LUA_POSIX),
                bearer=True, refuses_open_key=True, scrubs_jwt=False, stores_token=False,
                dbd_keeps_token=False,
                source=Source("25.11.7", "slurm-25-11-7-1",
                              "f56e676bbd3e7cccbdd7c505c030c62bb983ebee",
                              "f71f1e5f33a72e7864104a6857e86862eac3c4e5e348c92dd0c10dbe03a82dec")),
        # 26.05 scrubs SLURM_JWT from a job only on sbatch's default export, and
        # its srun refuses to start with it: --export=ALL jobs need the same side.
        Release("sid", "26.05.5", RESTD, "/slurm/v0.0.44",
                SlurmSide(conf=BOTH, packages=LUA_POSIX),
                bearer=True, refuses_open_key=True, scrubs_jwt=True, stores_token=False,
                dbd_keeps_token=False,
                cgroup2_only=True),
    )
}
DEFAULT = "bookworm"
# Which rows `make test` runs (SLURMJWT_MATRIX unset) and `make test-releases` runs.
MATRICES = ("debian", "source", "all")


def release(codename: str) -> Release:
    """Given a release's name, return its Release; raise KeyError naming the
    known ones when there is no row for it."""
    try:
        return RELEASES[codename]
    except KeyError:
        raise KeyError(f"unknown release {codename!r}; known: {', '.join(RELEASES)}") from None


def matrix(selection: str) -> list[str]:
    """Given `debian` (the rows from Debian's archive), `source` (the rows built
    from tarballs), `all`, or a comma-separated list of names, return those
    rows' names in release order; raise KeyError for an unknown name."""
    if selection in ("", "debian"):
        return [name for name, rel in RELEASES.items() if rel.source is None]
    if selection == "source":
        return [name for name, rel in RELEASES.items() if rel.source is not None]
    if selection == "all":
        return list(RELEASES)
    names = [name.strip() for name in selection.split(",") if name.strip()]
    for name in names:
        release(name)
    return names
