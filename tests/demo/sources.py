"""Slurm releases no Debian release ships, built from SchedMD's release
tarballs: find the tarball, check its sha256, and build the image the demo's
Dockerfile then starts from instead of a plain Debian base
(packaging/docker/Dockerfile.slurm-source).

The tarballs are not in the repository: they are looked for in
SLURMJWT_SLURM_SOURCES (default ../shared/slurm-src beside the checkout).
The image is tagged like the demo's other bases (<prefix>/base:slurm-X.Y)
and kept, so the build (about 2 minutes per release on 2 cores) runs once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import docker
import docker.errors

from tests.demo.errors import DemoError, Say
from tests.demo.releases import RELEASES, Release, Source

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "packaging" / "docker" / "Dockerfile.slurm-source"
DEFAULT_DIR = REPO.parent / "shared" / "slurm-src"
TARGET = "slurm-source"
# The build compiles Slurm: a quarter of the default CPU weight, so that a
# shared machine's other work keeps going (the Makefile also runs it at nice 19).
CPU_SHARES = 256


def sources_dir() -> Path:
    """Return the directory the tarballs are looked for in."""
    return Path(os.environ.get("SLURMJWT_SLURM_SOURCES") or DEFAULT_DIR)


def tarball(source: Source) -> Path:
    """Return the path of `source`'s tarball after checking its sha256; raise
    DemoError saying where it was looked for, or what it hashes to."""
    path = sources_dir() / source.tarball
    if not path.is_file():
        raise DemoError(f"no {source.tarball} in {path.parent}: make it with `git archive "
                        f"--prefix=slurm-{source.version}/ {source.tag} | xz` in a clone of "
                        f"SchedMD's slurm (tag {source.tag}, commit {source.commit}), and set "
                        "SLURMJWT_SLURM_SOURCES to its directory")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != source.sha256:
        raise DemoError(f"{path} has sha256 {digest.hexdigest()}, not {source.sha256} as "
                        "pinned in tests/demo/releases.py: refusing to build it")
    return path


def missing() -> dict[str, str]:
    """Return, for each source release whose tarball is absent or altered, why."""
    why: dict[str, str] = {}
    for name, rel in RELEASES.items():
        if rel.source is not None:
            try:
                tarball(rel.source)
            except DemoError as err:
                why[name] = str(err)
    return why


def build_base(client: docker.DockerClient, rel: Release, debian_base: str, name: str,
               say: Say) -> None:
    """Build `rel`'s Slurm from its tarball on the image `debian_base` and tag the
    result `name` (Docker's layer cache makes an unchanged rebuild take
    seconds); raise DemoError with the end of the build log on failure."""
    assert rel.source is not None
    source = tarball(rel.source)
    with tempfile.TemporaryDirectory(prefix="slurmjwt-demo-src-") as ctx:
        context = Path(ctx)
        shutil.copy2(DOCKERFILE, context / "Dockerfile")
        shutil.copy2(source, context / source.name)
        say(f"building Slurm {rel.slurm} from {source.name} as {name} (about 2 minutes "
            "on 2 cores the first time)")
        try:
            client.images.build(path=str(context), target=TARGET, tag=name, rm=True,
                                forcerm=True, network_mode="host",
                                container_limits={"cpushares": CPU_SHARES},
                                buildargs={"BASE": debian_base,
                                           "SLURM_VERSION": rel.source.version})
        except docker.errors.BuildError as err:
            lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip()
                     for chunk in err.build_log]
            tail = "\n".join(line for line in lines if line)[-3000:]
            raise DemoError(f"building Slurm {rel.slurm} failed: {err.msg}\n{tail}") from None
        except docker.errors.APIError as err:
            raise DemoError(f"building Slurm {rel.slurm} failed: "
                            f"{err.explanation or err}") from None
