"""A real two-node OpenDHT network (Debian ``dhtnode``) for tests.

Why two nodes: a lone dhtnode answers every put with HTTP 502.  Each node runs
``dhtnode -s -v -l LOG -p PORT -b PEER --proxyserver PROXYPORT`` (``-s`` is the
non-forking daemon mode, so we keep the real pid; without ``-v -l`` a daemonised
dhtnode never meets its peer).

Optionally everything runs behind a command prefix such as
``["ip", "netns", "exec", "ns1"]``; readiness is then probed from inside too.
Processes stay in our process group, so a killed test run takes them along.
"""

from __future__ import annotations

import atexit
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

_PROBE = r"""
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        sys.stdout.write(r.read(65536).decode("utf-8", "replace"))
except Exception as exc:
    sys.stdout.write("")
"""


def have_dhtnode() -> bool:
    return shutil.which("dhtnode") is not None


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody holds right now (TCP or UDP), on IPv4 and IPv6 wildcards alike.

    dhtnode binds ``0.0.0.0`` and ``[::]``; embedded test nodes may hold ``::1``.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s4:
            s4.bind(("0.0.0.0", 0))
            port = int(s4.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET6, kind) as s6:
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s6.bind(("::", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class DhtNetwork:
    """Two paired dhtnodes with REST proxies; `start`, `stop`, `restart` (same ports).

    ``nodes=1`` gives a lone node (its proxy answers puts with 502), for tests of that.

    `host` is where the nodes are reached (for ``-b`` and the proxy URLs).  Ports
    are picked free here unless given (inside a fresh namespace any port is
    free).  Values live in dhtnode memory only: they do not survive `stop`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        prefix: Sequence[str] = (),
        host: str = "127.0.0.1",
        ports: Sequence[int] | None = None,
        proxy_ports: Sequence[int] | None = None,
        network_id: int | None = None,
        nodes: int = 2,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prefix = list(prefix)
        self.host = host
        self._pick = not ports and not proxy_ports  # ours to re-pick after a bind race
        self.ports = list(ports) if ports else [free_port(socket.SOCK_DGRAM) for _ in range(nodes)]
        self.proxy_ports = list(proxy_ports) if proxy_ports else [free_port() for _ in range(nodes)]
        if len(self.ports) != nodes or len(self.proxy_ports) != nodes:
            raise ValueError(f"need {nodes} ports and {nodes} proxy ports")
        self.network_id = network_id
        self.procs: list[subprocess.Popen[bytes]] = []
        self.starts = 0
        atexit.register(self.stop)  # a test that forgot stop() leaves no daemon behind

    # -- addresses -------------------------------------------------------------
    @property
    def proxy_urls(self) -> list[str]:
        return [f"http://{self.host}:{p}" for p in self.proxy_ports]

    @property
    def bootstrap(self) -> list[tuple[str, int]]:
        """(host, port) of every node, as EmbeddedRendezvous wants it."""
        return [(self.host, p) for p in self.ports]

    def log_path(self, i: int) -> Path:
        return self.workdir / f"dhtnode{i}.log"

    # -- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> DhtNetwork:
        """Start the nodes (see `_start`); on a first start, retry a lost port race."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except PortTaken:
                if not (self._pick and self.starts == 1 and attempt < 2):
                    raise
                self.starts = 0
                self.ports = [free_port(socket.SOCK_DGRAM) for _ in self.ports]
                self.proxy_ports = [free_port() for _ in self.proxy_ports]
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> DhtNetwork:
        """Start the nodes; return once every proxy answers and node 0 has a good peer.

        The last node starts first and node 0 last, bootstrapping to a node that
        is already up: it has its peer at once.  (Started together, the first
        bootstrap ping can be lost and pairing waits ~3 s for a retry.)  The
        others then need ~1 s before they serve requests: ~1 s in all.
        """
        if self.procs:
            raise RuntimeError("dht network already running")
        self.starts += 1
        count = len(self.ports)
        procs: dict[int, subprocess.Popen[bytes]] = {}
        try:
            for i in reversed(range(count)):
                argv = [
                    *self.prefix,
                    "dhtnode",
                    "-s",
                    "-v",
                    "-l",
                    str(self.log_path(i)),
                    "-p",
                    str(self.ports[i]),
                    "--proxyserver",
                    str(self.proxy_ports[i]),
                ]
                if count > 1:
                    argv += ["-b", f"{self.host}:{self.ports[(i + 1) % count]}"]
                if self.network_id is not None:
                    argv += ["-n", str(self.network_id)]
                procs[i] = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                self.procs = [procs[j] for j in sorted(procs)]
                self._wait(i, timeout, need_peer=(i == 0 and count > 1))
            # The other nodes learnt node 0 only from its ping; until their own
            # bootstrap retry (~1 s) they queue operations.  A get returns once they run.
            for i in range(1, count):
                self.http_get(i, "/key/" + "00" * 20, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until every proxy answers and node 0 reports ``ipv4.good >= 1``."""
        for i in range(len(self.procs)):
            self._wait(i, timeout, need_peer=(i == 0 and len(self.procs) > 1))

    def _wait(self, i: int, timeout: float, need_peer: bool) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    tails = self.log_tails()
                    error = PortTaken if "Address already in use" in tails else RuntimeError
                    raise error(f"dhtnode exited ({proc.returncode})\n{tails}")
            info = self.node_info(i)
            if info is not None and (not need_peer or _good(info) >= 1):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"dhtnode {i} not ready after {timeout}s: {info}\n{self.log_tails()}")
            time.sleep(0.02)

    def stop(self, grace: float = 0.0) -> None:
        """Stop both nodes: SIGTERM with `grace` seconds to exit, else SIGKILL."""
        procs, self.procs = self.procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        for proc in procs:
            try:
                proc.wait(max(grace, 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def restart(self, down_for: float = 0.0, timeout: float = 20.0) -> None:
        """Kill both nodes, stay down `down_for` seconds, start again on the same ports."""
        self.stop()
        time.sleep(down_for)
        self.start(timeout)

    def __enter__(self) -> DhtNetwork:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- probes ----------------------------------------------------------------
    def http_get(self, i: int, path: str, timeout: float = 2.0) -> str:
        """The body of ``GET path`` on node `i`'s proxy (from inside the prefix), or ""."""
        url = self.proxy_urls[i] + path
        if self.prefix:
            r = subprocess.run(
                [*self.prefix, sys.executable, "-c", _PROBE, url, str(timeout)],
                capture_output=True,
                text=True,
                timeout=timeout + 5,
            )
            return r.stdout
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return str(resp.read(65536).decode("utf-8", "replace"))
        except OSError:
            return ""

    def node_info(self, i: int, timeout: float = 2.0) -> dict[str, object] | None:
        """``GET /`` on node `i`'s proxy, parsed, or None."""
        body = self.http_get(i, "/", timeout)
        try:
            info = json.loads(body)
        except ValueError:
            return None
        return info if isinstance(info, dict) else None

    def log_tails(self, lines: int = 20) -> str:
        return "\n".join(self.log_tail(i, lines) for i in range(len(self.ports)))

    def log_tail(self, i: int, lines: int = 20) -> str:
        try:
            text = self.log_path(i).read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = []
        return f"--- dhtnode{i} log tail ---\n" + "\n".join(text)


class PortTaken(RuntimeError):
    """A dhtnode could not bind its port (someone took it after we picked it)."""


def _good(info: dict[str, object]) -> int:
    v4 = info.get("ipv4")
    good = v4.get("good") if isinstance(v4, dict) else 0
    return good if isinstance(good, int) else 0
