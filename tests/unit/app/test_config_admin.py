"""The admin's side of the config: default path, check-config, flags ⇔ keys, the
reference in docs/configuration.md, the example file, and reload (SIGHUP)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest
from support.helpers import PRINTER, until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app import cli
from z2z.app.config import FIELD_DOCS, FIELDS, RELOADABLE, build, check_file, render_reference
from z2z.app.gateway import Gateway
from z2z.core.records import Service

REPO = Path(__file__).resolve().parents[3]
T = "_ipp._tcp"


def run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in cli.make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def test_every_flag_is_a_key_and_every_key_a_flag() -> None:
    flags = {
        opt[2:]
        for action in run_parser()._actions
        for opt in action.option_strings
        if opt.startswith("--") and not opt.startswith("--no-")
    } - {"help", "config"}
    assert flags == set(FIELDS)


def test_every_key_is_documented() -> None:
    assert set(FIELD_DOCS) == set(FIELDS), "add the key's one-line doc to z2z.app.config.FIELD_DOCS"
    assert set(FIELDS) >= RELOADABLE


def test_reference_in_docs_matches_the_code() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    m = re.search(r"<!-- BEGIN REFERENCE[^\n]*-->\n(.*?)<!-- END REFERENCE -->", text, re.S)
    assert m, "docs/configuration.md lost its reference markers"
    assert m.group(1) == render_reference(), (
        "docs/configuration.md is out of date: paste the output of "
        "python -c \"from z2z.app.config import render_reference as r; print(r(), end='')\""
    )


def test_example_file_is_valid_and_complete() -> None:
    example = REPO / "contrib" / "z2z.toml"
    assert check_file(example) == []
    text = example.read_text()
    missing = [k for k in FIELDS if not re.search(rf"^#? ?{re.escape(k)} = ", text, re.M)]
    assert missing == [], f"contrib/z2z.toml does not show {missing}"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "z2z.toml"
    p.write_text(text)
    return p


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, 'site = "campus-a"\nimport-types = []\nexport-types = ["*"]\n')
    assert cli.main(["check-config", str(f)]) == 0
    assert "ok" in capsys.readouterr().out


def test_check_config_reports_every_problem_with_key_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(
        tmp_path,
        '# comment\nsite = "campus-a"\nsitename = "x"\nttl = "ten"\n\nrank = 1.5\n'
        'http-listen = "nowhere:port"\n[filters]\nx = 1\n',
    )
    assert cli.main(["check-config", str(f)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 5, err
    assert f"{f}:3: unknown key 'sitename'" in err[0]
    assert f"{f}:4: ttl: expected a number" in err[1]
    assert f"{f}:6: rank: expected a number" in err[2]
    assert f"{f}:7: http-listen:" in err[3]
    assert "unknown table 'filters'" in err[4]


def test_check_config_syntax_error_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(tmp_path, 'site = "a"\nttl = \n')
    assert cli.main(["check-config", str(f)]) == cli.EXIT_CONFIG
    assert "line 2" in capsys.readouterr().err
    assert cli.main(["check-config", str(tmp_path / "nope.toml")]) == cli.EXIT_CONFIG
    assert "does not exist" in capsys.readouterr().err


def test_check_config_cross_key_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, "ttl = 30\nrefresh = 30\n")
    assert cli.main(["check-config", str(f)]) == cli.EXIT_CONFIG
    assert "refresh" in capsys.readouterr().err
    f = write(tmp_path, "export-types = []\nimport-types = []\n")
    assert cli.main(["check-config", str(f)]) == cli.EXIT_CONFIG
    assert "at least one service type" in capsys.readouterr().err


def test_default_config_file_is_read_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = write(tmp_path, 'site = "from-default"\nttl = 300\n')
    monkeypatch.setattr(cli, "DEFAULT_CONFIG", str(default))
    args = cli.make_parser().parse_args(["run", "--ttl", "200"])
    cfg = cli.config_from_args(args)
    assert (cfg.site, cfg.ttl) == ("from-default", 200)
    other = tmp_path / "other.toml"
    other.write_text('site = "explicit"\n')
    args = cli.make_parser().parse_args(["run", "--config", str(other)])
    assert cli.config_from_args(args).site == "explicit"
    monkeypatch.setattr(cli, "DEFAULT_CONFIG", str(tmp_path / "absent.toml"))
    assert cli.config_from_args(cli.make_parser().parse_args(["run", "--site", "x"])).site == "x"


def test_filter_flags() -> None:
    args = cli.make_parser().parse_args(
        [
            "run",
            "--site",
            "s",
            "--export-types",
            "--import-types",
            "_ipp._tcp",
            "_daap._tcp.local.",
            "--import-never-from",
            "lab",
            "--import-never-from",
            "dorm",
            "--http-listen",
            "8080",
            "--metrics-listen",
            "[::1]:9464",
        ]
    )
    cfg = cli.config_from_args(args)
    assert cfg.export_types == () and cfg.import_types == ("_ipp._tcp", "_daap._tcp")
    assert cfg.import_never_from == ("lab", "dorm")
    assert cfg.http_listen == "127.0.0.1:8080" and cfg.metrics_listen == "[::1]:9464"
    p = cfg.policy()
    assert p.export_types == () and not p.exports_type(T) and p.imports_type(T)


def test_wildcard_only_where_it_means_something() -> None:
    assert build({}, {"type": ("*",)}).policy().wildcard
    with pytest.raises(Exception, match="deny-types"):
        cli.config_from_args(cli.make_parser().parse_args(["run", "--deny-types", "*"]))


# -- reload -------------------------------------------------------------------------


async def test_reload_keeps_what_is_still_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "level", logging.getLogger().level)  # reload sets it
    dht = MemoryDht()
    cfgs = [
        build(
            {}, {"site": s, "type": (T,), "state-dir": str(tmp_path / s), "election": False, "public": True}
        )
        for s in ("campus-a", "campus-b")
    ]
    a, b = (Gateway(c, MemoryLink(), MemoryRendezvous(dht)) for c in cfgs)
    await a.start()
    await b.start()
    lobby = Service(T, "Lobby Printer", "lobby", 631, (), ("10.1.0.8",))
    a.service_up(PRINTER)
    a.service_up(lobby)
    await until(lambda: len(b.link.published) == 2)
    lobby_proxy = b.link.published[(T, "Lobby Printer")]

    # b no longer imports "Printer": withdrawn; the lobby printer is left alone
    b.reload(replace(b.config, import_deny=("printer",), log_level="warning", site="renamed"))
    await until(lambda: list(b.link.published) == [(T, "Lobby Printer")])
    assert b.link.published[(T, "Lobby Printer")] is lobby_proxy
    assert b.config.site == "campus-b"  # needs a restart: kept
    assert b.status().filtered == {"import-deny": 1}

    # a stops exporting the lobby printer (tombstone), b allows Printer again (next get)
    a.reload(replace(a.config, export_deny=("lobby*",)))
    b.reload(replace(b.config, import_deny=()))
    await until(lambda: list(b.link.published) == [(T, "Printer")])

    # an import-only type added by reload is listened to and browsed
    b.reload(replace(b.config, import_types=(T, "_daap._tcp")))
    await until(lambda: set(b.status().types["listening"]) == {T, "_daap._tcp"})
    await asyncio.gather(a.stop(), b.stop())
