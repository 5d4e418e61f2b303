"""The demo's images: a Debian base (pulled, or made with debootstrap when no
registry answers), then the directory, controller and login images built
from packaging/docker/Dockerfile with the project installed into the login
image.

Every image is tagged per release (slurmjwt-demo/<role>:<release>) and kept
by `down`, so a second run reuses the base and the build cache.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from tests.demo import engine, sources
from tests.demo.errors import DemoError, Say
from tests.demo.names import PREFIX
from tests.demo.releases import Release, release

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "packaging" / "docker"
REPOSITORY = PREFIX
MIRROR = "http://deb.debian.org/debian"
PULL_TIMEOUT = 20.0  # seconds; with no registry the pull fails long before
# Source the login image installs from; tests/ and CI files are not needed there.
PROJECT_SKIP = ("tests/", ".ci/", "build/")
TASKPROLOG = REPO / "packaging" / "slurm" / "taskprolog.sh"
TASKPROLOG_FALLBACK = "#!/bin/sh\necho 'unset SLURM_JWT'\n"
# The controller has no project package but runs srun in jobs, which loads the
# cli_filter where a release configures it.
CLI_FILTER = REPO / "packaging" / "slurm" / "cli_filter.lua"


@dataclass(frozen=True)
class Images:
    """Tags of the images one release's demo runs."""

    base: str
    directory: str
    controller: str
    login: str


def tag(role: str, rel: Release) -> str:
    return f"{REPOSITORY}/{role}:{rel.codename}"


def ensure_images(client: docker.DockerClient, rel: Release, say: Say) -> Images:
    """Return the release's images, building what is missing or out of date
    (docker's layer cache makes an unchanged rebuild take seconds); raise
    DemoError when the base cannot be had or a build fails."""
    base = ensure_base(client, rel, say)
    with tempfile.TemporaryDirectory(prefix="slurmjwt-demo-ctx-") as ctx:
        context = Path(ctx)
        stage_context(context)
        images = Images(base, tag("directory", rel), tag("controller", rel), tag("login", rel))
        for role, name in (("directory", images.directory), ("controller", images.controller),
                           ("login", images.login)):
            say(f"building image {name}")
            build(client, context, role, name, base, rel.slurm_side.packages,
                  from_source=rel.source is not None, sackd=rel.sackd_packages)
    return images


def ensure_base(client: docker.DockerClient, rel: Release, say: Say) -> str:
    """Return the tag of a base image for `rel`: the cached one, else
    debian:<release> pulled from a registry, else a debootstrap import; for a
    release built from source, its Slurm built on the Debian base it names."""
    name = tag("base", rel)
    if rel.source is not None:
        debian_base = ensure_base(client, release(rel.debian), say)
        sources.build_base(client, rel, debian_base, name, say)
        return name
    if has_image(client, name):
        return name
    official = f"debian:{rel.codename}"
    if has_image(client, official) or pull(client, official, say):
        client.images.get(official).tag(name)
        return name
    debootstrap_import(client, rel.codename, name, say)
    return name


def has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def pull(client: docker.DockerClient, name: str, say: Say) -> bool:
    """Try to pull `name` for at most PULL_TIMEOUT seconds; return whether it came."""
    say(f"pulling {name} (at most {PULL_TIMEOUT:.0f} s)")
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            client.images.pull(name)
            outcome.append(True)
        except docker.errors.DockerException as err:
            say(f"no registry: {str(err).splitlines()[0][:160]}")
            outcome.append(False)

    # The daemon may retry for a long time; the thread is left to it (daemon=True).
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(PULL_TIMEOUT)
    if thread.is_alive():
        say(f"no registry answered within {PULL_TIMEOUT:.0f} s")
        return False
    return bool(outcome and outcome[0])


def debootstrap_import(client: docker.DockerClient, codename: str, name: str, say: Say) -> None:
    """Make a minbase root file system of Debian `codename` with debootstrap and
    import it as image `name`; raise DemoError with debootstrap's log tail on
    failure."""
    if shutil.which("debootstrap") is None:
        engine.install_packages(("debootstrap",), say)
    say(f"making a {codename} base image with debootstrap (about 30 s)")
    with tempfile.TemporaryDirectory(prefix="slurmjwt-demo-root-") as tmp:
        root = Path(tmp) / "root"
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", codename, str(root), MIRROR],
            capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = root / "debootstrap" / "debootstrap.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else done.stderr[-2000:]
            raise DemoError(f"debootstrap {codename} failed (exit {done.returncode}):\n{tail}")
        archive = Path(tmp) / "root.tar"
        # Numeric owners as they are: the image must keep root:root and the rest.
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(archive), "."],
                       check=True)
        repository, _, version = name.partition(":")
        client.api.import_image_from_file(str(archive), repository=repository, tag=version)
    if not has_image(client, name):
        raise DemoError(f"docker import of the {codename} root file system made no {name}")


def stage_context(context: Path) -> None:
    """Fill an empty build context: packaging/docker's files, the project's
    source under project/ (what the login image installs), the TaskProlog and
    the cli_filter (what the controller image gets of the project)."""
    for entry in DOCKER_DIR.iterdir():
        if entry.is_file() and entry.name != "README.md":
            shutil.copy2(entry, context / entry.name)
    stage_project(context / "project")
    prolog = context / "taskprolog.sh"
    if TASKPROLOG.exists():
        shutil.copy2(TASKPROLOG, prolog)
    else:
        prolog.write_text(TASKPROLOG_FALLBACK)
    shutil.copy2(CLI_FILTER, context / "cli_filter.lua")


def stage_project(dest: Path, skip: tuple[str, ...] = PROJECT_SKIP) -> None:
    """Copy the project's source files (tracked, or new and not ignored, but
    none under `skip`) into `dest`; the image builds and installs them
    (packaging/docker/install-project.sh)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=False)
    if listed.returncode != 0:
        raise DemoError(f"cannot list the project's files with git in {REPO}: "
                        f"{listed.stderr.decode(errors='replace').strip()}")
    for rel_path in sorted(set(listed.stdout.decode().split("\0"))):
        source = REPO / rel_path
        if not rel_path or rel_path.startswith(skip) or not source.is_file():
            continue  # deleted in the work tree, or not needed in the image
        target = dest / rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def build(client: docker.DockerClient, context: Path, target: str, name: str,
          base: str, packages: tuple[str, ...] = (), from_source: bool = False,
          sackd: tuple[str, ...] = ()) -> None:
    """Build stage `target` of the Dockerfile in `context` as `name` (host
    network: apt inside reaches the same mirrors as the host); with
    `from_source`, `base` has Slurm already and no Slurm package is installed;
    raise DemoError with the end of the build log on failure. `sackd`: Debian's
    sackd packages for the login image (tests/demo/sackd.py)."""
    previous = client.images.get(name).id if has_image(client, name) else None
    buildargs = {"BASE": base, "SLURM_SIDE_PACKAGES": " ".join(packages)}
    if from_source:
        buildargs.update(SLURM_PACKAGES="", SLURM_DAEMON_PACKAGES="")
    if target == "login" and sackd:
        buildargs["SACKD_PACKAGES"] = " ".join(sackd)
    try:
        built, _ = client.images.build(path=str(context), target=target, tag=name, rm=True,
                                       forcerm=True, network_mode="host", buildargs=buildargs)
    except docker.errors.BuildError as err:
        lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip()
                 for chunk in err.build_log]
        tail = "\n".join(line for line in lines if line)[-3000:]
        raise DemoError(f"building {name} failed: {err.msg}\n{tail}") from None
    except docker.errors.APIError as err:
        raise DemoError(f"building {name} failed: {err.explanation or err}") from None
    if previous and previous != built.id:
        # The tag moved (the source changed): drop the old image rather than
        # leave one untagged image per run; one still in use stays.
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(previous, noprune=False)


def remove_images(client: docker.DockerClient, rel: Release, say: Say) -> None:
    """Remove the release's demo images, the cached base included."""
    for role in ("login", "controller", "directory", "base"):
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag(role, rel))
            say(f"removed image {tag(role, rel)}")


