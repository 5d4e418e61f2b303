"""slurm.conf discovery: SlurmUser, key path, AuthAltTypes, Include."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from pam_slurmjwt.errors import ConfigError
from pam_slurmjwt.slurmconf import auth_sockets, other_auth, parse_slurm_conf


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


# --- The Export=auto rule: another way in than JWT (slurmconf.auth_sockets) ---

def _listen(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


MUNGE = "/run/munge/munge.socket.2"
SACK = "/run/slurm/sack.socket"
CTLD_SACK = "/run/slurmctld/sack.socket"
CLUSTER_SACK = "/run/slurm-big/sack.socket"  # ClusterName=Big: Slurm lowers it

# (slurm.conf lines or None for no slurm.conf, sockets present under root,
#  the socket expected to be found or None: JWT is the only way in)
RULE = [
    ("AuthType=auth/munge", [MUNGE], MUNGE),
    ("AuthType=auth/munge", [SACK], None),
    ("AuthType=auth/munge", [], None),
    ("", [MUNGE], MUNGE),  # auth/munge is Slurm's default
    ("AuthType=auth/slurm", [SACK], SACK),
    ("AuthType=auth/slurm", [MUNGE], None),
    ("AuthType=auth/slurm", [], None),
    ("AuthType=auth/slurm", [CTLD_SACK], CTLD_SACK),
    ("AuthType=auth/slurm\nClusterName=Big", [CLUSTER_SACK, SACK], CLUSTER_SACK),
    ("AuthType=auth/slurm\nClusterName=Big", [SACK], SACK),
    ("AuthType=\"auth/slurm\"\nClusterName=\"Big\"", [CLUSTER_SACK, SACK], CLUSTER_SACK),
    ("AuthType=auth/slurm\nClusterName=other", [CLUSTER_SACK], None),
    ("AuthType=auth/none", [MUNGE, SACK], None),
    (None, [MUNGE], MUNGE),
    (None, [SACK], SACK),
    (None, [], None),
]


@pytest.mark.parametrize("conf,present,found", RULE)
def test_other_auth_follows_authtype_and_its_sockets(tmp_path: Path, conf: str | None,
                                                     present: list[str],
                                                     found: str | None) -> None:
    root = str(tmp_path / "r")
    if conf is not None:
        (tmp_path / "r/etc/slurm").mkdir(parents=True)
        (tmp_path / "r/etc/slurm/slurm.conf").write_text(conf + "\nNodeName=n1 CPUs=2\n")
    socks = [_listen(Path(root + path)) for path in present]
    try:
        auth, tried = auth_sockets(None, None, {}, root)
        answer = other_auth(auth, tried)
    finally:
        for sock in socks:
            sock.close()
    assert answer.socket == (root + found if found else None)
    assert answer.works is (found is not None)
    if conf is not None:
        assert answer.auth == ("auth/munge" if "AuthType" not in conf
                               else conf.split("\n")[0].split("=")[1].strip('"'))


def test_a_fifo_or_device_as_slurm_conf_is_refused_at_once(tmp_path: Path) -> None:
    """SLURM_CONF is the user's to set: a FIFO is not waited on, /dev/zero not read."""
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        with pytest.raises(ConfigError, match="not a regular file"):
            parse_slurm_conf(path)


def test_other_auth_takes_slurm_conf_from_the_environment_then_slurmjwt_conf(
        tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("AuthType=auth/slurm\n")
    (tmp_path / "b.conf").write_text("AuthType=auth/munge\n")
    env = {"SLURM_CONF": str(tmp_path / "b.conf")}  # what the command reads
    assert auth_sockets(None, str(tmp_path / "a.conf"), env, str(tmp_path))[0] == "auth/munge"
    assert auth_sockets(None, str(tmp_path / "a.conf"), {}, str(tmp_path))[0] == "auth/slurm"


def test_other_auth_reads_the_configless_copy_when_etc_has_none(tmp_path: Path) -> None:
    (tmp_path / "run/slurm/conf").mkdir(parents=True)
    (tmp_path / "run/slurm/conf/slurm.conf").write_text("AuthType=auth/slurm\n")
    assert auth_sockets(None, None, {}, str(tmp_path)) == (
        "auth/slurm", tuple(str(tmp_path) + p for p in (SACK, CTLD_SACK,
                                                         "/run/slurmdbd/sack.socket")))


def test_slurm_sack_socket_alone_is_tried_when_set(tmp_path: Path) -> None:
    (tmp_path / "slurm.conf").write_text("AuthType=auth/slurm\n")
    sock = _listen(tmp_path / SACK.lstrip("/"))
    try:
        env = {"SLURM_SACK_SOCKET": str(tmp_path / "elsewhere.socket")}
        assert not other_auth(*auth_sockets(None, str(tmp_path / "slurm.conf"), env,
                                            str(tmp_path))).works
        other = _listen(tmp_path / "elsewhere.socket")
        other.close()  # the file stays: a socket, which is all that is looked at
        assert other_auth(*auth_sockets(None, str(tmp_path / "slurm.conf"), env,
                                        str(tmp_path))).socket == str(tmp_path / "elsewhere.socket")
    finally:
        sock.close()


def test_munge_socket_from_authinfo_unless_mungesocket_is_set(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text("AuthType=auth/munge\nAuthInfo=cred_expire=60,socket=/m/one.sock\n")
    assert auth_sockets(None, str(conf), {}) == ("auth/munge", ("/m/one.sock",))
    assert auth_sockets("/m/two.sock", str(conf), {}) == ("auth/munge", ("/m/two.sock",))
    conf.write_text("AuthInfo=/m/old-form.sock\n")
    assert auth_sockets(None, str(conf), {}) == ("auth/munge", ("/m/old-form.sock",))


def test_a_file_that_is_not_a_socket_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "slurm.conf").write_text("AuthType=auth/slurm\n")
    (tmp_path / "run/slurm").mkdir(parents=True)
    (tmp_path / "run/slurm/sack.socket").write_text("")
    assert not other_auth(*auth_sockets(None, str(tmp_path / "slurm.conf"), {},
                                        str(tmp_path))).works
