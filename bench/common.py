"""What the testbed benchmarks share: gateways, the reflector host, statistics, versions.

The benchmarks run on the namespace testbed of the tests (``tests/support/testbed.py``,
imported by putting ``tests/`` on ``sys.path``): two campus LANs behind routers
that never forward multicast, a real two-node OpenDHT network (``dhtnode``) in
``wan``, and real processes in each namespace.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.netns import veth_pair  # noqa: E402  (tests/ is only importable once on sys.path)
from support.testbed import DhtNet, Node, Proc, Testbed, skip_reason  # noqa: E402

from bench.stats import pct  # noqa: E402

__all__ = [
    "REPO",
    "DhtNet",
    "GatewaySetup",
    "Node",
    "Proc",
    "Testbed",
    "add_bridge_host",
    "choose_setups",
    "environment",
    "memory_of",
    "pct",
    "skip_reason",
    "start_gateways",
    "start_reflector",
    "summary",
    "z2z_supports",
]

SERVICE_TYPE = "_ipp._tcp"


# --- statistics ------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, min, p50, p95, max (and mean) of a sample, in its own unit."""
    return {
        "n": len(values),
        "min": min(values, default=float("nan")),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "max": max(values, default=float("nan")),
        "mean": sum(values) / len(values) if values else float("nan"),
    }


# --- gateways ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewaySetup:
    """How a pair of `z2z run` gateways is started: rendezvous kind, extra flags, environment.

    `rendezvous` is ``proxy`` (each campus its own dhtnode's REST proxy, ``:8080`` and
    ``:8081``) or ``embedded`` (an OpenDHT node inside each gateway, bootstrapping to
    ``:4222`` and ``:4223``).  `args` are added to both command lines (e.g. ``--mdns
    avahi``).  With `avahi`, a private avahi-daemon is started on each gateway host
    and its D-Bus address is put in the gateway's environment; `env` is added too.
    With `wan_delay_ms` (proxy only) each gateway reaches its proxy through a TCP
    relay in ``wan`` that delays every byte by that much in each direction (see
    `start_delay_relay`), a stand-in for a far-away rendezvous: the kernel here
    has no netem qdisc.
    """

    label: str
    rendezvous: str = "proxy"
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    avahi: bool = False
    wan_delay_ms: float = 0.0


def rendezvous_urls(dht: DhtNet, kind: str) -> list[str]:
    """Rendezvous URLs for campus A and campus B: each talks to its own dhtnode."""
    if kind == "proxy":
        return dht.proxy_urls
    if kind == "embedded":
        return [f"opendht://{host}:{port}" for host, port in dht.nodes]
    raise ValueError(f"unknown rendezvous kind {kind!r}")


def start_gateways(
    tb: Testbed,
    setup: GatewaySetup,
    *,
    network: str = "z2z",
    service_type: str = SERVICE_TYPE,
    log_level: str = "info",
    timeout: float = 30.0,
) -> tuple[Proc, Proc]:
    """Start the campus-A and campus-B gateways (``a-gw``, ``b-gw``) and wait until both bridge."""
    assert tb.dht is not None, "start the DHT first"
    urls = rendezvous_urls(tb.dht, setup.rendezvous)
    if setup.wan_delay_ms:
        if setup.rendezvous != "proxy":
            raise ValueError("wan_delay_ms needs the proxy rendezvous (a TCP relay)")
        urls = [
            start_delay_relay(tb, tb.dht.address, port, port + 10000, setup.wan_delay_ms)
            for port in tb.dht.proxy_ports
        ]
    avahis = tb.start_avahis(["a-gw", "b-gw"]) if setup.avahi else {}
    procs = []
    for host, site, url in (("a-gw", "campus-a", urls[0]), ("b-gw", "campus-b", urls[1])):
        env = dict(setup.env)
        if host in avahis:
            env.update(avahis[host].env)
        argv = [
            sys.executable, "-m", "z2z", "run", "--public", "--site", site, "--interface", "lan0",
            "--rendezvous", url, "--type", service_type, "--network", network,
            "--state-dir", str(tb.workdir / f"state-{host}"), "--log-level", log_level, *setup.args,
        ]  # fmt: skip
        procs.append(tb.spawn(host, argv, name=f"{host}-z2z", env=env))
    for proc in procs:
        proc.wait_line(r"bridging ", timeout=timeout, stream="stderr")
    return procs[0], procs[1]


def gateway_status(tb: Testbed, host: str) -> dict[str, Any] | None:
    """The gateway's ``status.json`` in its state dir (None before it exists, or with older z2z)."""
    path = tb.workdir / f"state-{host}" / "status.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def bridged_via(tb: Testbed, setup: GatewaySetup) -> str:
    """What both gateways bridge through right now, from their status.json: a short label."""
    names = {
        "dht": "leaders' DHT",
        "rendezvous": "REST proxy" if setup.rendezvous == "proxy" else "embedded node",
    }
    via = []
    for host in ("a-gw", "b-gw"):
        doc = gateway_status(tb, host)
        raw = doc.get("bridging_via", "rendezvous") if doc else "rendezvous"
        via.append(names.get(str(raw), str(raw)))
    return via[0] if via[0] == via[1] else f"A: {via[0]}, B: {via[1]}"


def wait_settled(tb: Testbed, setup: GatewaySetup, timeout: float = 30.0) -> str:
    """Wait until both gateways bridge through the leaders' DHT, if they elect (stage machine).

    With ``--no-election``, or a z2z without status.json, there is nothing to wait
    for.  Returns `bridged_via` once settled or at the timeout.
    """
    if "--no-election" not in setup.args and gateway_status(tb, "a-gw") is not None:
        wait_until(lambda: bridged_via(tb, setup) == "leaders' DHT", timeout, step=0.1)
    return bridged_via(tb, setup)


_RELAY = r"""
import asyncio, sys
host, listen, target, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1e3
target_host = sys.argv[5] if len(sys.argv) > 5 else host

async def pipe(reader, writer):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def send():
        while (item := await queue.get()) is not None:
            due, data = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        await asyncio.sleep(max(0.0, delay))
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    except OSError:
        pass
    queue.put_nowait(None)
    try:
        await sender
    except OSError:
        pass

async def serve(client_r, client_w):
    try:
        server_r, server_w = await asyncio.open_connection(target_host, target)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

async def main():
    server = await asyncio.start_server(serve, host, listen)
    print("relaying", listen, "->", target, flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def start_delay_relay(
    tb: Testbed, host: str, target: int, listen: int, delay_ms: float, target_host: str | None = None
) -> str:
    """A TCP relay in ``wan`` on `host`:`listen` → `target_host` (default `host`):`target`; its URL.

    `delay_ms` each way.
    Every chunk read on one side is written to the other `delay_ms` later, in
    order, so a request/response exchange costs one extra round trip of
    2 × `delay_ms` and a pushed (streamed) value one extra `delay_ms`.
    """
    proc = tb.spawn(
        "wan",
        [sys.executable, "-c", _RELAY, host, str(listen), str(target), str(delay_ms), target_host or host],
        name=f"wan-relay-{listen}",
    )  # fmt: skip
    proc.wait_line(r"^relaying", timeout=10, stream="stdout")
    return f"http://{host}:{listen}"


def z2z_supports(flag: str) -> bool:
    """Whether ``z2z run --help`` lists `flag` (so optional rows appear once the code has them)."""
    r = subprocess.run(
        [sys.executable, "-m", "z2z", "run", "--help"], capture_output=True, text=True, cwd=REPO
    )
    return flag in r.stdout


_LOG_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_times(proc: Proc, pattern: str) -> list[tuple[float, str]]:
    """(Unix time, line) of every stderr line of a gateway matching regex `pattern`.

    The gateway's log format starts with ``asctime`` (local time, milliseconds).
    """
    rx = re.compile(pattern)
    out = []
    for line in proc.stderr().splitlines():
        m = _LOG_STAMP.match(line)
        if m and rx.search(line):
            stamp = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            out.append((stamp.timestamp(), line))
    return out


# --- the Avahi reflector host -------------------------------------------------------------------


def add_bridge_host(tb: Testbed, name: str, host: int) -> Node:
    """A host with ``lan0`` on campus A's LAN and ``lan1`` on campus B's (10.77.N.host each).

    The testbed only builds one-LAN hosts, so this one is made here from the same
    pieces (`netns.veth_pair` into each router's ``br-lan``).  Its namespace carries
    the testbed's tag and is registered in ``tb.nodes``, so `Testbed.close` kills
    what runs in it and deletes it, and a crashed run's leftovers are swept.
    """
    from support.netns import Netns

    if name in tb.nodes:
        raise ValueError(f"node {name!r} exists")
    ns = Netns(f"{tb.tag}-{name}")
    node: Node | None = None
    try:
        ns.run("sh", "-ec", "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad\n"
                            "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad\n")  # fmt: skip
        for ifname, letter in (("lan0", "a"), ("lan1", "b")):
            campus = tb.campuses[letter]
            router = tb.nodes[campus.router].ns
            port = f"p{host}-{name}{letter}"[:15]
            veth_pair(ns, ifname, router, port)
            router.ip("link", "set", port, "master", "br-lan")
            ns.ip("addr", "add", f"{campus.addr4(host)}/24", "dev", ifname)
            ns.ip("-6", "addr", "add", f"{campus.addr6(host)}/64", "dev", ifname, "nodad")
        a = tb.campuses["a"]
        node = Node(name, ns, a.addr4(host), a.addr6(host), "lan0", a)
    finally:
        if node is None:
            ns.delete()
    tb.nodes[name] = node
    return node


_REFLECTOR_CONF = """[server]
host-name={host_name}
use-ipv4=yes
use-ipv6=yes
allow-interfaces=lan0,lan1
disallow-other-stacks=no
enable-dbus=no
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area=no

[publish]
publish-hinfo=no
publish-workstation=no

[reflector]
enable-reflector=yes
reflect-ipv=no
"""


def start_reflector(tb: Testbed, host: str, timeout: float = 15.0) -> Proc:
    """avahi-daemon with ``enable-reflector=yes`` on both LANs of `host` (see `add_bridge_host`).

    As in `Testbed.start_avahi`, the daemon runs in a private mount namespace with a
    tmpfs over /run (its pid file and socket) and /etc/avahi/services; it needs no
    D-Bus (``enable-dbus=no``), a reflector only talks mDNS.
    """
    d = tb.workdir / f"reflector-{host}"
    d.mkdir()
    (d / "avahi-daemon.conf").write_text(_REFLECTOR_CONF.format(host_name=host))
    script = (
        "mount -t tmpfs -o mode=0755 z2z-bench /run\n"
        "mkdir -p /run/avahi-daemon\n"
        "if [ -d /etc/avahi/services ]; then mount -t tmpfs z2z-bench /etc/avahi/services; fi\n"
        f"exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f {d / 'avahi-daemon.conf'}\n"
    )
    proc = tb.spawn(
        host, ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script], name=f"{host}-avahi"
    )
    proc.wait_line("Server startup complete", timeout=timeout, stream="stderr")
    return proc


# --- processes and the machine -----------------------------------------------------------------


def choose_setups(what: str, names: Sequence[str] | None, available: Mapping[str, Any]) -> list[str]:
    """The setups a benchmark runs (default: all); one-line exit if it cannot run or a name is unknown."""
    reason = skip_reason()
    if reason:
        raise SystemExit(f"{what} benchmark: {reason}")
    chosen = list(names or available)
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise SystemExit(f"unknown setup(s) {unknown}; have {sorted(available)}")
    return chosen


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


def _first_line(argv: Sequence[str], pattern: str = r".") -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (r.stdout + r.stderr).splitlines():
        if re.search(pattern, line):
            return line.strip()
    return None


def _tool_version(label: str, argv: Sequence[str], pattern: str = r".") -> str | None:
    """``label X.Y.Z`` from the first output line of `argv` matching `pattern`, or None."""
    line = _first_line(argv, pattern)
    m = re.search(r"\d+(\.\d+)+", line or "")
    return f"{label} {m.group(0)}" if m else None


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def revision() -> str | None:
    """The z2z commit measured (``Z2Z_REVISION`` overrides), marked when z2z/ has local changes."""
    if os.environ.get("Z2Z_REVISION"):
        return os.environ["Z2Z_REVISION"]
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "z2z"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head} with uncommitted changes in z2z/" if dirty else head


def environment() -> dict[str, Any]:
    """Where and with what a run happened: date, CPU, kernel and the versions that matter."""
    cpu = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    debian = Path("/etc/debian_version")
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": f"Debian {debian.read_text().strip()}" if debian.exists() else platform.platform(),
        "python": platform.python_version(),
        "z2z": _package_version("z2z"),
        "revision": revision(),
        "zeroconf": _package_version("zeroconf"),
        "opendht": _package_version("opendht"),
        "httpx": _package_version("httpx"),
        "dnslib": _package_version("dnslib"),
        "dhtnode": _tool_version("dhtnode", ["dhtnode", "--version"], r"[Vv]ersion"),
        "avahi": _tool_version("avahi-daemon", ["avahi-daemon", "--version"]),
        "dnsperf": _tool_version("dnsperf", ["dnsperf", "-h"], r"Version"),
    }


def wait_until(pred: Any, timeout: float, step: float = 0.05) -> bool:
    """Poll `pred()` until true or `timeout` seconds pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


def burst_printers(
    tb: Testbed, services: int, publishers: int, prefix: str = "Campus P"
) -> tuple[list[tuple[Proc, int]], float]:
    """`services` instances over `publishers` python-zeroconf printers on ``a-printer``, announced at once.

    Each printer is its own process and host (``tests/tools/mdns_printer.py
    --control --no-probe``) with AirPrint-like TXT; its instances are named
    ``<prefix><k>-<i>``.  Returns the printers with their shares, and the
    `time.time()` of the burst.
    """
    per = -(-services // publishers)
    printers: list[tuple[Proc, int]] = []
    for k in range(publishers):
        n = min(per, services - k * per)
        if n <= 0:
            break
        pr = tb.spawn_tool(
            "a-printer", "mdns_printer", "--control", "--no-probe", "--type", SERVICE_TYPE,
            "--host", f"printer{k}", "--address", tb.node("a-printer").ipv4, "--txt", "txtvers=1",
            "--txt", "rp=ipp/print", "--txt", "ty=Campus Printer", name=f"a-printer-{k}", stdin=True,
        )  # fmt: skip
        printers.append((pr, n))
    for pr, _ in printers:
        pr.wait_event("ready", timeout=30)
    t_burst = time.time()
    for k, (pr, n) in enumerate(printers):
        pr.send(f"burst {n} {prefix}{k:02d}-")
    return printers, t_burst


@contextlib.contextmanager
def locked(path: str | None, waits: list[float]) -> Iterator[None]:
    """Hold an exclusive flock on `path` (none if None); the wait is appended to `waits`."""
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    t0 = time.monotonic()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        waits.append(time.monotonic() - t0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
