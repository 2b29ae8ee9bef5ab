"""Service integration: the systemd unit (checked by systemd-analyze), sd_notify
readiness/status/watchdog through a fake $NOTIFY_SOCKET, and journald-friendly logs."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.helpers import PRINTER

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app import cli, systemd
from z2z.app.config import build
from z2z.app.gateway import Gateway

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "contrib" / "z2z.service"


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_asks_for_what_the_issue_says() -> None:
    s = unit_settings()
    expected = {
        "Type": "notify",
        "Restart": "on-failure",
        "StateDirectory": "z2z",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "DynamicUser": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    }
    assert {k: s[k][0] for k in expected} == expected
    assert int(s["WatchdogSec"][0]) > 0
    assert s["ExecStart"] == ["/opt/z2z/bin/z2z run"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # the private network's secret reaches the dynamic user as a systemd credential
    assert s["LoadCredential"] == ["network.secret:/var/lib/z2z/network.secret"]
    assert [v.partition(":")[0] for v in s["SetCredential"]] == ["network.secret"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (Debian systemd)")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    z2z = shutil.which("z2z", path=str(REPO / ".venv" / "bin")) or shutil.which("z2z")
    assert z2z, "z2z is not installed (make install)"
    unit = tmp_path / "z2z.service"
    unit.write_text(UNIT.read_text().replace("/opt/z2z/bin/z2z", z2z))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    # any complaint (unknown key, bad value, missing binary) is printed; warnings too
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


# -- sd_notify -------------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's, named in $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out += sock.recv(4096).decode().split("\n")
        except BlockingIOError:
            return out


def test_notify_writes_one_datagram(notify_socket: socket.socket) -> None:
    assert systemd.notify("READY=1", "STATUS=up")
    assert received(notify_socket) == ["READY=1", "STATUS=up"]


def test_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"z2z-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"


def test_no_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert not systemd.notify("READY=1")  # a dead socket is logged, never raised


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert systemd.watchdog_interval() is None


async def test_gateway_ready_status_watchdog_stopping(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    cfg = build(
        {},
        {
            "site": "campus-a",
            "type": ("_ipp._tcp",),
            "state-dir": str(tmp_path),
            "election": False,
            "public": True,
        },
    )
    gw = Gateway(cfg, MemoryLink(), MemoryRendezvous(MemoryDht()))
    await gw.start()
    gw.service_up(PRINTER)
    lines: list[str] = []
    for _ in range(15):  # 1.5 s: a status job at least; drain as systemd would (queue of 10)
        await asyncio.sleep(0.1)
        lines += received(notify_socket)
    assert lines.count("READY=1") == 1
    assert lines.count("WATCHDOG=1") >= 5
    assert any(line.startswith("STATUS=bridging via rendezvous: 1 exported") for line in lines)
    gw.reload(cfg)
    await gw.stop()
    rest = received(notify_socket)
    assert rest.index("RELOADING=1") < rest.index("READY=1") < rest.index("STOPPING=1")
    await asyncio.sleep(0.3)
    assert "WATCHDOG=1" not in received(notify_socket)  # the watchdog stops with the gateway


async def test_follower_is_ready_too(notify_socket: socket.socket, tmp_path: Path) -> None:
    cfg = build({}, {"site": "campus-a", "type": ("_ipp._tcp",), "state-dir": str(tmp_path), "public": True})
    gw = Gateway(cfg, MemoryLink(), MemoryRendezvous(MemoryDht()))
    gw.leadership.machine.status = lambda: {"state": "follower", "stage": 1}  # type: ignore[union-attr]
    gw.bridge.active = False
    gw.notify_systemd()
    assert received(notify_socket)[0] == "READY=1"


def test_journald_logs_have_no_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.handlers = []
        monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
        cli.setup_logging("info")
        assert root.handlers[0].formatter._fmt == "%(levelname)s %(name)s: %(message)s"  # type: ignore[union-attr]
        root.handlers = []
        monkeypatch.delenv("JOURNAL_STREAM")
        cli.setup_logging("info")
        assert root.handlers[0].formatter._fmt.startswith("%(asctime)s")  # type: ignore[union-attr]
    finally:
        root.handlers, level = saved
        root.setLevel(level)


def test_state_directory_from_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    from z2z.app.config import default_state_dir

    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/z2z:/var/lib/other")
    assert default_state_dir() == "/var/lib/z2z"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert default_state_dir() != "/var/lib/other"
