"""What `python -m tests.demo up|down|status` does, as functions the test calls too:
engine, images, keys, containers, transcript, in that order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tests.demo import cluster, engine, images, keys, lock, steps
from tests.demo.errors import Say
from tests.demo.releases import Release


@dataclass(frozen=True)
class Shown:
    """A demo that is up, and what it showed."""

    release: Release
    running: cluster.Running
    keys: keys.Keys
    transcript: steps.Transcript
    timings: dict[str, float] = field(default_factory=dict)

    def login_command(self) -> str:
        port = self.running.ssh_port
        return f"ssh -i {self.keys.user_key} -p {port} {cluster.DEMO_USER}@127.0.0.1"


def up(rel: Release, say: Say) -> Shown:
    """Bring the release's demo up from scratch (an old one is removed first),
    run the transcript and return it; raise DemoError when a stage fails (the
    containers are then left for inspection: `down` removes them). Holds the
    host-wide demo lock until `down` (or the end of this process)."""
    lock.acquire(say)
    timings: dict[str, float] = {}
    started = time.monotonic()

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - started - sum(timings.values()), 1)

    client = engine.ensure_engine(say)
    lap("engine")
    cluster.remove(client, rel.codename, say)
    built = images.ensure_images(client, rel, say)
    lap("images")
    host_keys = keys.ensure_keys(rel.codename, say)
    running = cluster.start(client, rel, built, keys.secrets(host_keys), say)
    keys.write_known_hosts(host_keys, running.ssh_port)
    lap("cluster")
    say("logging in over ssh as demo")
    transcript = steps.run_transcript(host_keys, running.ssh_port, rel, running.systemd)
    lap("transcript")
    return Shown(rel, running, host_keys, transcript, timings)


def down(release: str | None, say: Say, remove_images: list[Release] | None = None) -> None:
    """Remove the demo's containers, networks and volumes (of one release, or
    all); images too for the releases in `remove_images`; then stop dockerd
    if the demo started it and nothing else runs on it. Waits for the demo
    lock (another process's run finishes first); this process's hold ends here."""
    lock.acquire(say)
    try:
        if not engine.answers():
            say("no Docker daemon answers: nothing to remove")
            return
        client = engine.client()
        cluster.remove(client, release, say)
        for rel in remove_images or []:
            images.remove_images(client, rel, say)
        engine.stop_dockerd_if_ours(client, say)
    finally:
        lock.release(everything=True)


def status(release: str | None) -> str:
    """Return a short account of what of the demo exists right now."""
    if not engine.answers():
        return "no Docker daemon answers: no demo is running"
    found = cluster.find(engine.client(), release)
    if not any(found.values()):
        return "no demo is running"
    return "\n".join(f"{kind}: {', '.join(names)}" for kind, names in found.items() if names)
