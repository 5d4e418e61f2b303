"""slurmjwt doctor: check the whole chain on a login node and say, for each
link, OK or what is wrong and the exact fix. Root gets every check; a user
gets those that concern them. Nothing here prints or logs a token.

The checks live in one module per concern (conf, names, keys, units, slurm,
accounting, clusters, pam, shells), each registered in order (registry.py); the renderers
(render.py) print what they found."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from pam_slurmjwt.doctor import registry, render
from pam_slurmjwt.doctor.accounting import AccountingChecks
from pam_slurmjwt.doctor.check import Check
from pam_slurmjwt.doctor.clusters import ClusterChecks
from pam_slurmjwt.doctor.conf import ConfChecks
from pam_slurmjwt.doctor.host import slurm_version as _slurm_version
from pam_slurmjwt.doctor.host import systemctl as _systemctl
from pam_slurmjwt.doctor.keys import KeyChecks, reload_jwks
from pam_slurmjwt.doctor.names import NameChecks
from pam_slurmjwt.doctor.pam import PamChecks
from pam_slurmjwt.doctor.shells import ShellChecks
from pam_slurmjwt.doctor.slurm import SlurmChecks
from pam_slurmjwt.doctor.units import UnitChecks
from pam_slurmjwt.errors import SlurmJwtError

__all__ = ["Check", "Doctor", "reload_jwks", "run_doctor"]


class Doctor(ConfChecks, NameChecks, KeyChecks, UnitChecks, SlurmChecks, AccountingChecks,
             ClusterChecks, PamChecks, ShellChecks):
    """Runs the registered checks in order; later ones use what earlier ones found."""

    def __init__(self, config_path: str | None, user: str | None, **options: Any) -> None:
        # The probes are looked up here, when a run starts, so that a test
        # can stand in for them (this package's _systemctl, _slurm_version).
        options.setdefault("systemctl", _systemctl)
        options.setdefault("scontrol_version", _slurm_version)
        super().__init__(config_path, user, **options)

    def run(self) -> Iterator[Check]:
        for step in registry.steps(self.root, self.systemd):
            try:
                check = step.function(self)
            except SlurmJwtError as err:
                # Errors say "what; fix" (the project's one message pattern).
                said = str(err)
                check = Check("FAIL", step.name.replace("_", " "), said,
                              said.rpartition("; ")[2] if "; " in said else "")
                if step.needed:  # without slurmjwt.conf or slurm.conf, nothing else can run
                    yield dataclasses.replace(check, id=step.name)
                    return
            if check is not None:  # None: nothing to check on this host
                yield dataclasses.replace(check, id=step.name)


def run_doctor(config_path: str | None, user: str | None, out: Callable[[str], None],
               as_json: bool = False) -> bool:
    """Print every check through out(), as text lines or one JSON document;
    return True when none failed."""
    return (render.json_report if as_json else render.text)(Doctor(config_path, user).run(), out)
