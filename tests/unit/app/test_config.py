"""Config file, flags and their errors: one clear line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from z2z.app.cli import EXIT_CONFIG, main
from z2z.app.config import ConfigError, build, check_settings, load_file


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "z2z.toml"
    p.write_text(text)
    return p


def test_file_then_flags_win(tmp_path: Path) -> None:
    f = write(tmp_path, 'site = "campus-a"\ntype = ["_ipp._tcp", "_daap._tcp.local."]\nttl = 300\n')
    cfg = build(load_file(f), check_settings({"ttl": 90}))
    assert cfg.site == "campus-a"
    assert cfg.type == ("_ipp._tcp", "_daap._tcp")
    assert cfg.ttl == 90


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('sitename = "x"\n', "unknown key 'sitename'"),
        ('ttl = "ten"\n', "ttl: expected a number"),
        ("ttl = 5\n", "ttl: 5 is outside"),
        ('type = ["ipp"]\n', "type: not a DNS-SD service type"),
        ('rendezvous = "ftp://x"\n', "unsupported rendezvous URL 'ftp://x'"),
        ('site = "bad site!"\n', "not a valid site name"),
        ('host-template = "{host}"\n', "must contain {site}"),
        ('instance-template = "{nope} {site}"\n', "bad template"),
        ("site = \n", "line 1"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_file(write(tmp_path, text))
    assert needle in str(err.value)


def test_refresh_must_be_below_ttl() -> None:
    with pytest.raises(ConfigError, match="refresh"):
        build({}, {"ttl": 30, "refresh": 30.0})


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080", "opendht://a:4222,b", "opendht://[::1]:5000"])
def test_good_rendezvous_urls(url: str) -> None:
    assert check_settings({"rendezvous": url}) == {"rendezvous": url}


@pytest.mark.parametrize(
    "url", ["http://", "opendht://a:0", "opendht://a:xx", "dht://a", "opendht://::1:4222"]
)
def test_bad_rendezvous_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="rendezvous"):
        check_settings({"rendezvous": url})


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, "ttl = [1]\n")
    assert main(["run", "--config", str(f)]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "ttl" in err


def test_cli_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == EXIT_CONFIG
    assert "does not exist" in capsys.readouterr().err


def test_cli_bad_type_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--type", "printer"]) == EXIT_CONFIG
    assert "not a DNS-SD service type" in capsys.readouterr().err


def test_cli_unknown_flag_exits_nonzero() -> None:
    proc = subprocess.run([sys.executable, "-m", "z2z", "run", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr


def test_cli_unknown_interface(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "z2z",
            "run",
            "--interface",
            "nosuch0",
            "--state-dir",
            str(tmp_path),
            "--rendezvous",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 4, proc.stderr
    assert "no such interface: nosuch0" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_cli_unreachable_rendezvous(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "z2z",
            "run",
            "--state-dir",
            str(tmp_path),
            "--interface",
            "lo",
            "--rendezvous",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert "cannot reach rendezvous http://127.0.0.1:9" in proc.stderr


def test_refresh_follows_a_short_ttl_unless_set() -> None:
    """The defaults match OpenDHT's 600 s value lifetime; a ttl set alone brings its refresh along."""
    base = {"site": "campus-a", "type": ("_ipp._tcp",)}
    cfg = build({}, base)
    assert (cfg.ttl, cfg.refresh) == (1500, 500.0)
    assert cfg.refresh < 600  # re-put before OpenDHT drops the value
    assert build({}, {**base, "ttl": 120}).refresh == 40.0  # the old defaults, as before
    assert build({}, {**base, "ttl": 10}).refresh == pytest.approx(10 / 3)
    assert build({}, {**base, "ttl": 120, "refresh": 100.0}).refresh == 100.0
    with pytest.raises(ConfigError):
        build({}, {**base, "ttl": 120, "refresh": 200.0})
