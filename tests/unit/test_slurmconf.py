"""slurm.conf discovery: SlurmUser, key path, AuthAltTypes, Include."""

from __future__ import annotations

from pathlib import Path

import pytest

from pam_slurmjwt.errors import ConfigError
from pam_slurmjwt.slurmconf import parse_slurm_conf


def test_jwt_key_from_auth_alt_parameters(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=c\nSlurmUser=slurm\nAuthAltTypes=auth/jwt\n"
                    "AuthAltParameters=jwt_key=/etc/slurm/jwt.key,max_token_lifespan=3600\n"
                    "NodeName=n1 CPUs=2\n")
    sc = parse_slurm_conf(str(conf))
    assert sc.slurm_user == "slurm"
    assert sc.jwt_enabled
    assert sc.jwt_key_path() == "/etc/slurm/jwt.key"
    assert sc.alt_parameter("max_token_lifespan") == "3600"


def test_key_defaults_to_state_save_location(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text("StateSaveLocation=/var/spool/slurmctld\n")
    sc = parse_slurm_conf(str(conf))
    assert sc.jwt_key_path() == "/var/spool/slurmctld/jwt_hs256.key"
    assert sc.slurm_user == "root"  # Slurm's own default
    assert not sc.jwt_enabled


def test_include_is_followed_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "auth.conf").write_text("AuthAltTypes=auth/jwt\nSlurmUser=slurm\n")
    conf = tmp_path / "slurm.conf"
    conf.write_text("Include auth.conf\n")
    sc = parse_slurm_conf(str(conf))
    assert sc.jwt_enabled and sc.slurm_user == "slurm"


def test_include_loop_is_an_error_not_a_hang(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"Include {conf}\n")
    with pytest.raises(ConfigError, match="Include nested more than 8 deep"):
        parse_slurm_conf(str(conf))


def test_missing_slurm_conf_says_how_to_point_at_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_slurm_conf(str(tmp_path / "nope.conf"))
    assert str(err.value) == (f'cannot read slurm.conf "{tmp_path}/nope.conf": No such file '
                              f"or directory; set SlurmConf= in slurmjwt.conf or SLURM_CONF")


def test_task_prolog_and_cli_filter_come_through_include(tmp_path: Path) -> None:
    (tmp_path / "jobs.conf").write_text("TaskProlog=/usr/lib/slurmjwt/taskprolog.sh\n"
                                        "CliFilterPlugins=cli_filter/lua\n")
    conf = tmp_path / "slurm.conf"
    conf.write_text("SlurmUser=slurm\nInclude jobs.conf\n")
    sc = parse_slurm_conf(str(conf))
    assert sc.task_prolog == "/usr/lib/slurmjwt/taskprolog.sh"
    assert sc.cli_filter_plugins == ("cli_filter/lua",)
