"""slurmjwt.conf parsing: defaults, types, unknown keys, unsafe files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pam_slurmjwt.config import OPTIONS, Config, export_wanted, load_config, parse_config
from pam_slurmjwt.errors import ConfigError


def test_defaults_without_a_file(tmp_path: Path) -> None:
    cfg = load_config(str(tmp_path / "absent.conf"))
    assert cfg.lifespan == 1800
    assert cfg.min_uid == 1000
    assert cfg.helper_socket == "/run/slurmjwt/helper.sock"
    assert cfg.backend == "auto"
    assert cfg.allow_privileged == ()


def test_max_lifespan_is_twice_lifespan_unless_set() -> None:
    # Before Slurm 26.05 a token can be stored with every job it submits:
    # the cap anyone may ask for stays close to the default.
    assert parse_config("", "/c").max_lifespan == 3600
    assert parse_config("Lifespan=600\nRefreshMargin=60", "/c").max_lifespan == 1200
    assert parse_config("MaxLifespan=86400", "/c").max_lifespan == 86400


def test_max_lifespan_for_names_users_and_groups() -> None:
    cfg = parse_config("MaxLifespanFor=portal:86400, @workflows:43200", "/c")
    assert cfg.max_lifespan_for == (("portal", 86400), ("@workflows", 43200))


def test_keys_are_case_insensitive_and_comments_ignored() -> None:
    cfg = parse_config("lifespan=600  # ten minutes\nREFRESHMARGIN=60\n"
                       "DenyUsers=bob, carol\n# MinUid=5\n", "/x.conf")
    assert (cfg.lifespan, cfg.refresh_margin) == (600, 60)
    assert cfg.deny_users == ("bob", "carol")
    assert cfg.min_uid == 1000


def test_unknown_key_is_a_warning_naming_file_and_line() -> None:
    cfg = parse_config("Lifespan=900\nLifeSpam=3\n", "/etc/slurm/slurmjwt.conf")
    assert cfg.warnings == ("/etc/slurm/slurmjwt.conf:2: unknown key 'LifeSpam' ignored",)
    assert cfg.lifespan == 900


@pytest.mark.parametrize(("text", "message"), [
    ("Lifespan=ten", "/c:1: Lifespan=ten is not a whole number"),
    ("Lifespan=5", "/c:1: Lifespan=5 is below the minimum 10"),
    ("Backend=magic", "/c:1: Backend=magic is not one of auto, key, scontrol"),
    ("JwtKey=relative/key", "/c:1: JwtKey=relative/key must be an absolute path"),
    ("Lifespan=100\nRefreshMargin=100", "/c: RefreshMargin=100 must be smaller than "
                                        "Lifespan=100, or every token would need "
                                        "refreshing at once"),
    ("Lifespan=9000\nMaxLifespan=3600", "/c: Lifespan=9000 exceeds MaxLifespan=3600"),
    ("MaxLifespanFor=alice", "/c:1: MaxLifespanFor: 'alice' is not NAME:SECONDS or "
                             "@GROUP:SECONDS"),
    ("MaxLifespanFor=alice:1d", "/c:1: MaxLifespanFor: 'alice:1d' is not NAME:SECONDS or "
                                "@GROUP:SECONDS"),
    ("MaxLifespanFor=@:3600", "/c:1: MaxLifespanFor: '@:3600' is not NAME:SECONDS or "
                              "@GROUP:SECONDS"),
    ("MaxLifespanFor=alice:5", "/c:1: MaxLifespanFor: alice:5 is below the minimum 10"),
    ("RootSocket=root.sock", "/c:1: RootSocket=root.sock must be an absolute path"),
    ("MaxRequestsPerUser=0", "/c:1: MaxRequestsPerUser=0 is below the minimum 1"),
    ("HelperTimeout=61", "/c:1: HelperTimeout=61 is above the maximum 60"),
    ("HelperTimeout=2160000", "/c:1: HelperTimeout=2160000 is above the maximum 60"),  # 25 days
    ("ReadTimeout=61", "/c:1: ReadTimeout=61 is above the maximum 60"),
    ("LookupTimeout=999999999", "/c:1: LookupTimeout=999999999 is above the maximum 60"),
])
def test_bad_values_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "/c")
    assert str(err.value) == message


def test_every_timeout_is_bounded_and_says_so() -> None:
    """A timeout of days overflows a C client's poll() or waits for ever:
    every one has a maximum, named in its help (the manual and README)."""
    timeouts = [opt for opt in OPTIONS if opt.name.endswith("Timeout")]
    assert [opt.name for opt in timeouts] == ["HelperTimeout", "ReadTimeout", "LookupTimeout"]
    for opt in timeouts:
        assert opt.maximum == 60 and f", 1 to {opt.maximum}" in opt.help, opt.name
        cfg = parse_config(f"{opt.name}=60", "/c")
        assert getattr(cfg, opt.attr) == 60


def test_every_option_has_help_and_a_config_attribute() -> None:
    cfg = Config()
    for opt in OPTIONS:
        assert opt.help.endswith(".")
        if opt.default_text:  # a default that depends on other options
            continue
        assert getattr(cfg, opt.attr) == opt.default
    assert cfg.max_lifespan == 2 * cfg.lifespan


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own the file as root")
def test_group_writable_config_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "slurmjwt.conf"
    path.write_text("Lifespan=600\n")
    path.chmod(0o664)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(err.value) == (f'cannot use configuration "{path}": mode 0664 lets others '
                              f'change it; run chmod go-w "{path}"')


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_config_owned_by_a_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "slurmjwt.conf"
    path.write_text("Lifespan=600\n")
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by uid 65534, not root"):
        load_config(str(path))


def test_symlinked_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("")
    (tmp_path / "slurmjwt.conf").symlink_to(tmp_path / "real")
    with pytest.raises(ConfigError, match="it is a symlink"):
        load_config(str(tmp_path / "slurmjwt.conf"))


def test_export_auto_follows_the_munge_socket(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "munge.sock"
    cfg = parse_config(f"MungeSocket={path}\n", "/c")
    assert export_wanted(cfg) is True  # no munge here: JWT is the only way in
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        assert export_wanted(cfg) is False
    assert export_wanted(parse_config(f"MungeSocket={path}\nExport=always\n", "/c")) is True
    assert export_wanted(parse_config("Export=never\n", "/c")) is False


def test_export_auto_on_auth_slurm_follows_sackd_not_munge(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    munge, sack = tmp_path / "munge.sock", tmp_path / "sack.socket"
    (tmp_path / "slurm.conf").write_text("AuthType=auth/slurm\nAuthAltTypes=auth/jwt\n")
    monkeypatch.setenv("SLURM_SACK_SOCKET", str(sack))
    monkeypatch.delenv("SLURM_CONF", raising=False)
    cfg = parse_config(f"SlurmConf={tmp_path}/slurm.conf\nMungeSocket={munge}\n", "/c")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(munge))
        assert export_wanted(cfg) is True  # munged is there, but Slurm uses auth/slurm
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sack))
        assert export_wanted(cfg) is False  # sackd is the way in: no SLURM_JWT
        # slurm.conf is read once per Config; the sockets are looked at each time.
        (tmp_path / "slurm.conf").write_text("AuthType=auth/munge\n")
        assert export_wanted(cfg) is False
    sack.unlink()  # sackd gone
    assert export_wanted(cfg) is True


def test_clusters_longer_than_the_wrappers_buffer_is_refused_in_one_line() -> None:
    # The C wrapper keeps Clusters= in 4096 bytes: both refuse what it cannot hold.
    names = ",".join(f"cluster{i:04d}" for i in range(400))
    with pytest.raises(ConfigError, match=r"^/c:1: Clusters= is longer than 4095 bytes$"):
        parse_config(f"Clusters={names}\n", "/c")
    assert len(parse_config(f"Clusters={names[:4000]}\n", "/c").clusters) > 300
