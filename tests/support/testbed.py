"""A two-campus testbed on network namespaces, with a real OpenDHT rendezvous.

Why: z2z exists because mDNS does not cross routers.  Bridging can only be shown
with real routers between real links, real multicast on each link and a real DHT
in between; namespaces give all three on one machine, in about a second.

Topology (``N`` = campus number, 1 for ``a``, 2 for ``b``; all names are logical,
the namespace behind each is ``z2zt<pid>x<tag>-<name>``)::

                     wan  br-wan 10.77.0.1/24  fd77::1/64
                          dhtnode 10.77.0.1:4222 (proxy :8080)
                          dhtnode 10.77.0.1:4223 (proxy :8081)
                 ┌────────────┴─────────────┐
     ra  wan0 10.77.0.2                  rb  wan0 10.77.0.3
         br-lan 10.77.1.1 fd77:1::1          br-lan 10.77.2.1 fd77:2::1
         ┌─────┴───────┐                     ┌─────┴───────┐
     a-gw .2       a-printer .10         b-gw .2       b-client .20
     (lan0, fd77:1::2 ...)               (lan0, fd77:2::2 ...)

Every host has one interface, ``lan0``, with ``10.77.N.H/24`` and ``fd77:N::H/64``
(H written in the same digits, so ``a-printer`` is ``fd77:1::10``) and default
routes via its campus router.  Routers forward unicast (IPv4 and IPv6) to each
other through ``wan`` but never multicast: there is no multicast routing daemon,
so mDNS stays on each LAN, as on a real campus.

Typical use (see ``tests/conftest.py`` for the ``testbed`` fixture)::

    dht = tb.start_dht()                          # dht.proxy_url == "http://10.77.0.1:8080"
    printer = tb.spawn_tool("a-printer", "mdns_printer", "--name", "Campus Printer")
    printer.wait_event("registered")
    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", "_ipp._tcp")
    gw = tb.spawn("a-gw", [sys.executable, "-m", "z2z", "run", "--public", ...])
    up = watch.wait_event(lambda e: e["event"] == "up", timeout=15)
    tb.restart_dht(down_for=2)                    # rendezvous down and back (values lost)
    avahi = tb.start_avahi("b-gw")                # private avahi-daemon + D-Bus on b-gw
    tb.spawn("b-gw", [...], env=avahi.env)        # DBUS_SYSTEM_BUS_ADDRESS for that daemon

Each `Proc` logs stdout/stderr to files in `Testbed.workdir`; the fixture prints
their tails when a test fails (``Z2Z_KEEP_LOGS=1`` keeps the files).

Everything started here dies in `Testbed.close()`: tracked processes get SIGTERM
then SIGKILL, anything else still living in one of our namespaces (daemons that
forked) is killed, and the namespaces are deleted.  An ``atexit`` hook covers
forgotten closes, and each new testbed sweeps namespaces left by dead runs.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from support.netns import Netns, have_netns, netns_names, netns_pids, sh, veth_pair
from z2z.core.wire.envelope import Envelope
from z2z.core.wire.envelope import decode as decode_envelope

if TYPE_CHECKING:
    from support.dhtnet import DhtNetwork

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
TOOLS = TESTS / "tools"

NS_PREFIX = "z2zt"
_NS_RE = re.compile(rf"^{NS_PREFIX}(\d+)x[0-9a-f]+-")

WAN4, WAN6 = "10.77.0.1", "fd77::1"
KEEP_MARKER = ".keep"
DHT_PORTS = (4222, 4223)
DHT_PROXY_PORTS = (8080, 8081)

# Hosts every testbed has: logical name -> (campus letter, host number).
DEFAULT_HOSTS: dict[str, tuple[str, int]] = {
    "a-gw": ("a", 2),
    "a-printer": ("a", 10),
    "b-gw": ("b", 2),
    "b-client": ("b", 20),
}

Event = dict[str, Any]
EventMatch = str | Callable[[Event], bool]


def matching(event: str, **fields: Any) -> Callable[[Event], bool]:
    """Predicate for `Proc.wait_event`: ``matching("up", instance="Campus Printer")``."""

    def pred(e: Event) -> bool:
        return e.get("event") == event and all(e.get(k) == v for k, v in fields.items())

    return pred


def skip_reason() -> str | None:
    """Why the testbed cannot run here, or None when it can."""
    if not have_netns():
        return "testbed needs root and iproute2 (ip netns)"
    if shutil.which("dhtnode") is None:
        return "testbed needs dhtnode (Debian package dhtnode)"
    return None


@dataclass(frozen=True)
class Campus:
    """One site: a router namespace with a LAN bridge, numbered from 1."""

    letter: str
    number: int

    @property
    def router(self) -> str:
        return f"r{self.letter}"

    @property
    def subnet4(self) -> str:
        return f"10.77.{self.number}.0/24"

    @property
    def subnet6(self) -> str:
        return f"fd77:{self.number}::/64"

    @property
    def gateway4(self) -> str:
        return f"10.77.{self.number}.1"

    @property
    def gateway6(self) -> str:
        return f"fd77:{self.number}::1"

    @property
    def wan4(self) -> str:
        return f"10.77.0.{self.number + 1}"

    @property
    def wan6(self) -> str:
        return f"fd77::{self.number + 1}"

    def addr4(self, host: int) -> str:
        return f"10.77.{self.number}.{host}"

    def addr6(self, host: int) -> str:
        return f"fd77:{self.number}::{host}"


@dataclass
class Node:
    """A namespace of the testbed: a LAN host, a campus router or the wan."""

    name: str
    ns: Netns
    ipv4: str
    ipv6: str
    ifname: str
    campus: Campus | None = None

    @property
    def netns(self) -> str:
        """The real namespace name, for ``ip netns exec`` or ``ip -n``."""
        return self.ns.name

    @property
    def prefix(self) -> list[str]:
        """Command prefix that runs a program in this namespace."""
        return ["ip", "netns", "exec", self.ns.name]

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command here and collect its output; `env` adds to the environment."""
        return subprocess.run(
            [*self.prefix, *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **env} if env else None,
        )


class Proc:
    """A process started by `Testbed.spawn`, with stdout/stderr in files.

    Output goes to files rather than pipes so that a chatty process can never
    block on a full pipe, and so that a failing test can print the logs.
    """

    def __init__(
        self,
        name: str,
        node: Node,
        argv: Sequence[str],
        popen: subprocess.Popen[bytes],
        out_path: Path,
        err_path: Path,
    ) -> None:
        self.name = name
        self.node = node
        self.argv = list(argv)
        self.popen = popen
        self.out_path = out_path
        self.err_path = err_path
        self._pos = 0
        self._partial = b""
        self._lines: list[str] = []
        self._events: list[Event] = []

    def __repr__(self) -> str:
        return f"Proc({self.name!r}, pid={self.pid}, returncode={self.popen.poll()})"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    # -- output -------------------------------------------------------------
    def _read(self) -> None:
        """Pick up complete lines written since the last call."""
        with open(self.out_path, "rb") as f:
            f.seek(self._pos)
            chunk = f.read()
        if not chunk:
            return
        self._pos += len(chunk)
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self._lines.append(line)
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    ev = json.loads(line)
                    if isinstance(ev, dict):
                        self._events.append(ev)

    def lines(self) -> list[str]:
        """Complete stdout lines so far."""
        self._read()
        return list(self._lines)

    def events(self) -> list[Event]:
        """The JSON-object lines of stdout so far, in order."""
        self._read()
        return list(self._events)

    def mark(self) -> int:
        """Current event count; pass as ``after=`` to wait only for newer events."""
        self._read()
        return len(self._events)

    def wait_event(self, match: EventMatch, timeout: float = 10.0, after: int = 0) -> Event:
        """First event (index >= `after`) matching; `match` is an event name or a predicate.

        Raises AssertionError with the process logs on timeout or early exit.
        """
        pred: Callable[[Event], bool] = (
            (lambda e: e.get("event") == match) if isinstance(match, str) else match
        )
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            exited = not self.alive  # before reading, so the last words are read too
            self._read()
            for ev in self._events[seen:]:
                if pred(ev):
                    return ev
            seen = max(seen, len(self._events))
            if exited or time.monotonic() > deadline:
                why = f"exited with {self.returncode}" if exited else f"timed out after {timeout}s"
                raise AssertionError(f"{self.name}: no event matching {match!r}, {why}\n{self.log_tail()}")
            time.sleep(0.02)

    def wait_line(self, pattern: str, timeout: float = 10.0, stream: str = "both") -> str:
        """First line matching regex `pattern` in stdout, stderr or both."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            texts = []
            if stream in ("stdout", "both"):
                texts.append(self.stdout())
            if stream in ("stderr", "both"):
                texts.append(self.stderr())
            for text in texts:
                for line in text.splitlines():
                    if rx.search(line):
                        return line
            if not self.alive or time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no line matching {pattern!r}\n{self.log_tail()}")
            time.sleep(0.05)

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of stdout and stderr, for failure messages."""
        parts = [f"--- {self.name} ({' '.join(self.argv)}) returncode={self.returncode}"]
        for label, path in (("stdout", self.out_path), ("stderr", self.err_path)):
            text = path.read_text(errors="replace") if path.exists() else ""
            tail = text.splitlines()[-lines:]
            parts.append(f"--- {self.name} {label} ({path}):")
            parts.extend(tail or ["(empty)"])
        return "\n".join(parts)

    # -- control ------------------------------------------------------------
    def send(self, line: str) -> None:
        """Write one line to stdin (only for processes spawned with ``stdin=True``)."""
        if self.popen.stdin is None:
            raise RuntimeError(f"{self.name} was spawned without stdin")
        self.popen.stdin.write(line.rstrip("\n").encode() + b"\n")
        self.popen.stdin.flush()

    def signal(self, sig: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole group after `timeout` seconds.

        Returns the exit code (negative for a signal), as `subprocess` reports it.
        """
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.popen.poll()

    def kill(self) -> None:
        """SIGKILL the process and its group (a crash, as far as peers can tell)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


@dataclass(frozen=True)
class DhtNet:
    """Where the rendezvous lives: two dhtnodes paired with each other in ``wan``."""

    address: str = WAN4
    ports: tuple[int, ...] = DHT_PORTS
    proxy_ports: tuple[int, ...] = DHT_PROXY_PORTS

    @property
    def proxy_url(self) -> str:
        """The first node's OpenDHT REST proxy, e.g. ``http://10.77.0.1:8080``."""
        return f"http://{self.address}:{self.proxy_ports[0]}"

    @property
    def proxy_urls(self) -> list[str]:
        return [f"http://{self.address}:{p}" for p in self.proxy_ports]

    @property
    def opendht_url(self) -> str:
        """Embedded-node rendezvous URL, e.g. ``opendht://10.77.0.1:4222``."""
        return f"opendht://{self.address}:{self.ports[0]}"

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the first node, as ``dhtnode -b`` and DhtRunner want it."""
        return f"{self.address}:{self.ports[0]}"

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """(host, port) of both nodes, as the embedded rendezvous bootstraps."""
        return [(self.address, p) for p in self.ports]


_PING = r"""
import os, socket, struct, sys, time
dst, timeout = sys.argv[1], float(sys.argv[2])
v6 = ":" in dst
if v6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    echo, reply = 128, 129  # the kernel fills in the ICMPv6 checksum
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    echo, reply = 8, 0
ident, payload = os.getpid() & 0xFFFF, b"z2z-testbed!"  # even length: the checksum sums 16-bit words
def checksum(b):
    total = sum(struct.unpack(f"!{len(b) // 2}H", b))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
packet = struct.pack("!BBHHH", echo, 0, 0, ident, 1) + payload
if not v6:
    packet = struct.pack("!BBHHH", echo, 0, checksum(packet), ident, 1) + payload
t0 = time.monotonic()
s.sendto(packet, (dst, 0))
deadline = t0 + timeout
while (left := deadline - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data = s.recv(2048)
    except TimeoutError:
        break
    icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
    if icmp[0] == reply and struct.unpack("!H", icmp[4:6])[0] == ident:
        print(time.monotonic() - t0)
        sys.exit(0)
sys.exit(1)
"""

_TCP_CONNECT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as c:
    c.sendall(b"z2z\n")
    c.shutdown(socket.SHUT_WR)
    print(c.recv(1024).decode(errors="replace"), end="")
"""


@dataclass(frozen=True)
class Avahi:
    """A private avahi-daemon on one host, with its own D-Bus system bus.

    Pass `env` to `Testbed.spawn` so that python-avahi/dbus-python, avahi-browse
    and avahi-publish in that process talk to this daemon, not the machine's.
    """

    host: str
    bus_address: str
    daemon: Proc
    bus: Proc

    @property
    def env(self) -> dict[str, str]:
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.bus_address}


_DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

_AVAHI_CONF = """[server]
host-name={host_name}
use-ipv4=yes
use-ipv6=yes
allow-interfaces={ifname}
disallow-other-stacks=no
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area={wide_area}

[publish]
publish-hinfo=no
publish-workstation=no

[reflector]
enable-reflector=no
"""

# Where `wait_dht` puts its probe value: a key of its own, sha1("z2z-testbed/probe").
PROBE_KEY = hashlib.sha1(b"z2z-testbed/probe").hexdigest()

_DHT_READY = r"""
import json, sys, urllib.request
*urls, key, need = sys.argv[1:]
probe = b'{"data": "cHJvYmU=", "id": "1", "seq": 0, "type": 0}'
for url in urls:
    try:
        with urllib.request.urlopen(url + "/", timeout=2) as r:
            if json.load(r).get("ipv4", {}).get("good", 0) >= 1:
                continue
        if need == "put":
            req = urllib.request.Request(url + "/key/" + key, data=probe, method="POST")
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    continue
    except Exception as exc:
        print(url, exc)
    else:
        print(url, "no peer yet")
    sys.exit(1)
"""

_HTTP_GET = r"""
import json, sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
print(json.dumps({"status": status, "body": body.decode("utf-8", "replace")}))
"""


@dataclass
class Testbed:
    """Namespaces, links, routes and processes of one test; `close()` undoes it all.

    `hosts` adds LAN hosts beyond `DEFAULT_HOSTS` (name -> (campus letter, host
    number)); `add_host` does the same later.  Campuses are created for every
    letter used, numbered in alphabetical order (a=1, b=2, ...).
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    hosts: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    keep_logs: bool = False
    workdir: Path = field(init=False)
    tag: str = field(init=False)
    nodes: dict[str, Node] = field(init=False, default_factory=dict)
    campuses: dict[str, Campus] = field(init=False, default_factory=dict)
    procs: list[Proc] = field(init=False, default_factory=list)
    dht: DhtNet | None = field(init=False, default=None)
    avahis: dict[str, Avahi] = field(init=False, default_factory=dict)
    setup_seconds: float = field(init=False, default=0.0)
    dht_network: DhtNetwork | None = field(init=False, default=None)
    _closed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        t0 = time.monotonic()
        sweep_stale()
        self.tag = f"{NS_PREFIX}{os.getpid()}x{secrets.token_hex(2)}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"z2z-testbed-{self.tag}-"))
        self.keep_logs = self.keep_logs or bool(os.environ.get("Z2Z_KEEP_LOGS"))
        atexit.register(self.close)
        try:
            wanted = {**DEFAULT_HOSTS, **self.hosts}
            letters = sorted({campus for campus, _ in wanted.values()})
            self._build_wan()
            for number, letter in enumerate(letters, start=1):
                self._build_campus(Campus(letter, number))
            for name, (letter, host) in wanted.items():
                self.add_host(name, letter, host)
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.monotonic() - t0

    def __repr__(self) -> str:
        return f"Testbed({self.tag!r}, nodes={sorted(self.nodes)}, workdir={str(self.workdir)!r})"

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topology -----------------------------------------------------------
    def _netns(self, name: str, *, forwarding: bool) -> Netns:
        """A fresh namespace with DAD off (addresses usable at once)."""
        ns = Netns(f"{self.tag}-{name}")
        settings = {
            "net/ipv6/conf/all/accept_dad": "0",
            "net/ipv6/conf/default/accept_dad": "0",
            "net/ipv6/conf/all/disable_ipv6": "0",
            "net/ipv6/conf/default/disable_ipv6": "0",
        }
        if forwarding:
            settings |= {
                "net/ipv4/ip_forward": "1",
                "net/ipv6/conf/all/forwarding": "1",
                "net/ipv4/conf/all/send_redirects": "0",
                "net/ipv4/conf/default/send_redirects": "0",
            }
        script = "".join(f"echo {v} > /proc/sys/{k}\n" for k, v in settings.items())
        ns.run("sh", "-ec", script)
        return ns

    def _bridge(self, ns: Netns, name: str, addr4: str, addr6: str) -> None:
        """A bridge that floods multicast (no snooping) and forwards at once (no STP)."""
        ns.ip(
            "link",
            "add",
            name,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        )
        ns.ip("addr", "add", addr4, "dev", name)
        ns.ip("-6", "addr", "add", addr6, "dev", name, "nodad")
        ns.ip("link", "set", name, "up", "multicast", "on")

    def _build_wan(self) -> None:
        ns = self._netns("wan", forwarding=True)
        self.nodes["wan"] = Node("wan", ns, WAN4, WAN6, "br-wan")
        self._bridge(ns, "br-wan", f"{WAN4}/24", f"{WAN6}/64")

    def _build_campus(self, campus: Campus) -> None:
        wan = self.nodes["wan"]
        ns = self._netns(campus.router, forwarding=True)
        self.nodes[campus.router] = Node(
            campus.router, ns, campus.gateway4, campus.gateway6, "br-lan", campus
        )
        veth_pair(ns, "wan0", wan.ns, f"to-{campus.router}")
        wan.ns.ip("link", "set", f"to-{campus.router}", "master", "br-wan")
        ns.ip("addr", "add", f"{campus.wan4}/24", "dev", "wan0")
        ns.ip("-6", "addr", "add", f"{campus.wan6}/64", "dev", "wan0", "nodad")
        self._bridge(ns, "br-lan", f"{campus.gateway4}/24", f"{campus.gateway6}/64")
        ns.ip("route", "add", "default", "via", WAN4)
        ns.ip("-6", "route", "add", "default", "via", WAN6)
        wan.ns.ip("route", "add", campus.subnet4, "via", campus.wan4)
        wan.ns.ip("-6", "route", "add", campus.subnet6, "via", campus.wan6)
        # Direct routes between campus routers, so traffic need not hairpin in wan.
        for other in self.campuses.values():
            ns.ip("route", "add", other.subnet4, "via", other.wan4)
            ns.ip("-6", "route", "add", other.subnet6, "via", other.wan6)
            other_ns = self.nodes[other.router].ns
            other_ns.ip("route", "add", campus.subnet4, "via", campus.wan4)
            other_ns.ip("-6", "route", "add", campus.subnet6, "via", campus.wan6)
        self.campuses[campus.letter] = campus

    def add_host(self, name: str, campus: str, host: int) -> Node:
        """Put a new host namespace on a campus LAN: ``lan0`` = 10.77.N.host, fd77:N::host."""
        if name in self.nodes:
            raise ValueError(f"node {name!r} exists")
        if campus not in self.campuses:
            raise ValueError(f"no campus {campus!r} (have {sorted(self.campuses)})")
        c = self.campuses[campus]
        router = self.nodes[c.router].ns
        ns = self._netns(name, forwarding=False)
        port = f"p{host}-{name}"[:15]
        veth_pair(ns, "lan0", router, port)
        router.ip("link", "set", port, "master", "br-lan")
        ns.ip("addr", "add", f"{c.addr4(host)}/24", "dev", "lan0")
        ns.ip("-6", "addr", "add", f"{c.addr6(host)}/64", "dev", "lan0", "nodad")
        ns.ip("route", "add", "default", "via", c.gateway4)
        ns.ip("-6", "route", "add", "default", "via", c.gateway6)
        node = Node(name, ns, c.addr4(host), c.addr6(host), "lan0", c)
        self.nodes[name] = node
        return node

    def node(self, name: str) -> Node:
        """A node by logical name (``a-gw``, ``ra``, ``wan``...)."""
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r} (have {sorted(self.nodes)})") from None

    # -- processes ----------------------------------------------------------
    def spawn(
        self,
        host: str,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bool = False,
        cwd: str | Path | None = None,
    ) -> Proc:
        """Start `argv` in namespace `host`; output goes to ``<workdir>/<name>.{out,err}``.

        The process gets its own session so that `Proc.kill` reaches its children.
        `env` is added to this process's environment (plus ``PYTHONUNBUFFERED=1``).
        With `stdin=True` it can be fed with `Proc.send`; otherwise stdin is /dev/null.
        """
        node = self.node(host)
        base = name or f"{host}-{Path(argv[0]).name}"
        name = base
        taken = {p.name for p in self.procs}
        n = 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        out_path = self.workdir / f"{name}.out"
        err_path = self.workdir / f"{name}.err"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            popen = subprocess.Popen(
                [*node.prefix, *argv],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=full_env,
                cwd=str(cwd or REPO),
                start_new_session=True,
            )
        proc = Proc(name, node, argv, popen, out_path, err_path)
        self.procs.append(proc)
        return proc

    def spawn_tool(self, host: str, tool: str, *args: str, **kw: Any) -> Proc:
        """Run ``tests/tools/<tool>.py`` with this interpreter, e.g. ``mdns_printer``."""
        script = TOOLS / f"{tool}.py"
        if not script.exists():
            raise FileNotFoundError(script)
        kw.setdefault("name", f"{host}-{tool}")
        return self.spawn(host, [sys.executable, str(script), *args], **kw)

    def http_get(self, host: str, url: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET `url` from inside `host`; returns (status, body).  0 = no connection."""
        r = self.node(host).run(
            sys.executable, "-c", _HTTP_GET, url, str(timeout), check=False, timeout=timeout + 10
        )
        if r.returncode != 0:
            return 0, r.stderr
        reply = json.loads(r.stdout)
        return int(reply["status"]), str(reply["body"])

    def dht_values(
        self, proxy: str, service_type: str = "_ipp._tcp", host: str = "b-client", timeout: float = 10.0
    ) -> list[Envelope]:
        """Every value of the public network `z2z` stored under `service_type`'s key, decoded.

        Read through the REST proxy `proxy` from inside `host`, so what is seen is
        what the DHT really holds, not what a gateway believes it put.
        """
        key = hashlib.sha1(f"z2z/z2z/type/{service_type}".encode()).hexdigest()
        status, body = self.http_get(host, f"{proxy}/key/{key}", timeout=timeout)
        assert status == 200, body
        return [
            decode_envelope(base64.b64decode(json.loads(line)["data"]))
            for line in body.splitlines()
            if line.strip()
        ]

    def ping(self, host: str, address: str, timeout: float = 2.0) -> float | None:
        """One ICMP echo from `host` to `address` (v4 or v6); round-trip seconds or None.

        Done in Python with a raw socket, so no iputils-ping is needed.
        """
        r = self.node(host).run(
            sys.executable, "-c", _PING, address, str(timeout), check=False, timeout=timeout + 10
        )
        return float(r.stdout) if r.returncode == 0 else None

    def tcp_exchange(self, host: str, address: str, port: int, timeout: float = 3.0) -> str | None:
        """Connect from `host` to `address`:`port`, send a line, return the reply (None: failed)."""
        r = self.node(host).run(
            sys.executable,
            "-c",
            _TCP_CONNECT,
            address,
            str(port),
            str(timeout),
            check=False,
            timeout=timeout + 10,
        )
        return r.stdout if r.returncode == 0 else None

    def http_json(self, host: str, url: str, timeout: float = 5.0) -> Any:
        """GET `url` from `host` and parse the JSON body; raises on a non-200 reply."""
        status, body = self.http_get(host, url, timeout)
        if status != 200:
            raise AssertionError(f"GET {url} from {host}: status {status}: {body[-500:]}")
        return json.loads(body)

    # -- rendezvous ---------------------------------------------------------
    def start_dht(self, timeout: float = 30.0, require_good: bool = False) -> DhtNet:
        """Start (or restart after `stop_dht`) two paired dhtnodes in ``wan``.

        Returns once each proxy is usable: it reports ``ipv4.good >= 1`` or accepts
        a probe put (200; a lone node answers 502).  A put works within ~0.1 s,
        while ``good`` may lag ~3 s until a node confirms a peer that contacted it
        first; pass `require_good` to wait for that too.  Values do not survive a
        restart (dhtnode keeps them in memory only).  The nodes are run by
        `dhtnet.DhtNetwork` (`dht_network`), their logs are in the workdir.
        """
        if self.dht_network is None:
            from support.dhtnet import DhtNetwork

            self.dht_network = DhtNetwork(
                self.workdir / "dht",
                prefix=self.node("wan").prefix,
                host=WAN4,
                ports=DHT_PORTS,
                proxy_ports=DHT_PROXY_PORTS,
            )
        if self.dht_network.procs:
            raise RuntimeError("dht already running; stop_dht() first")
        self.dht_network.start(timeout)
        self.dht = DhtNet()
        self.wait_dht(timeout, require_good)
        return self.dht

    def wait_dht(self, timeout: float = 30.0, require_good: bool = False) -> None:
        """Wait until every proxy is usable (see `start_dht`), whoever started the nodes."""
        assert self.dht is not None and self.dht_network is not None
        deadline = time.monotonic() + timeout
        args = [*self.dht.proxy_urls, PROBE_KEY, "good" if require_good else "put"]
        while True:
            for proc in self.dht_network.procs:
                if proc.poll() is not None:
                    raise AssertionError(f"dhtnode exited ({proc.returncode})\n{self.dump_logs()}")
            r = self.node("wan").run(sys.executable, "-c", _DHT_READY, *args, check=False)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"dht not usable after {timeout}s: {r.stdout}{r.stderr}\n{self.dump_logs()}"
                )
            time.sleep(0.05)

    def stop_dht(self, kill: bool = False) -> None:
        """Take the rendezvous down (both nodes): SIGTERM, or SIGKILL with `kill`."""
        if self.dht_network is not None:
            self.dht_network.stop(grace=0.0 if kill else 5.0)

    def restart_dht(self, down_for: float = 0.0, timeout: float = 30.0) -> DhtNet:
        """Stop both nodes, stay down `down_for` seconds, start them again."""
        self.stop_dht()
        time.sleep(down_for)
        return self.start_dht(timeout)

    # -- avahi --------------------------------------------------------------
    def start_avahi(self, host: str, timeout: float = 10.0, *, wide_area: bool = False) -> Avahi:
        """Run a private dbus-daemon and avahi-daemon on `host`'s ``lan0``.

        Why private: avahi-daemon insists on one instance per machine (pid file
        and socket under /run/avahi-daemon) and talks on the system bus.  Here the
        bus listens on a socket in the workdir (clients find it through
        ``DBUS_SYSTEM_BUS_ADDRESS``, see `Avahi.env`), and the daemon runs in its own
        mount namespace with tmpfs over /run and /etc/avahi/services, so the
        machine's avahi, if any, is neither touched nor seen.  The daemon's host
        name is the node name (``a-gw.local``).  Both die with the testbed.
        """
        return self.start_avahis([host], timeout, wide_area=wide_area)[host]

    def start_avahis(
        self, hosts: Iterable[str], timeout: float = 10.0, *, wide_area: bool = False
    ) -> dict[str, Avahi]:
        """`start_avahi` on several hosts at once (each daemon probes for ~1 s)."""
        started: dict[str, Avahi] = {}
        for host in hosts:
            if host in self.avahis:
                started[host] = self.avahis[host]
                continue
            started[host] = self._spawn_avahi(host, timeout, wide_area)
        for host, avahi in started.items():
            avahi.daemon.wait_line("Server startup complete", timeout=timeout, stream="stderr")
            self.avahis[host] = avahi
        return started

    def _spawn_avahi(self, host: str, timeout: float, wide_area: bool = False) -> Avahi:
        node = self.node(host)
        d = self.workdir / f"avahi-{host}"
        d.mkdir()
        socket_path = d / "system_bus_socket"
        (d / "dbus.conf").write_text(_DBUS_CONF.format(socket=socket_path))
        conf = _AVAHI_CONF.format(host_name=host, ifname=node.ifname, wide_area="yes" if wide_area else "no")
        (d / "avahi-daemon.conf").write_text(conf)
        bus = self.spawn(
            host,
            ["dbus-daemon", "--nofork", "--nopidfile", "--config-file", str(d / "dbus.conf")],
            name=f"{host}-dbus",
        )
        deadline = time.monotonic() + timeout
        while not socket_path.exists():
            if not bus.alive or time.monotonic() > deadline:
                raise AssertionError(f"dbus-daemon on {host} did not start\n{bus.log_tail()}")
            time.sleep(0.01)
        address = f"unix:path={socket_path}"
        script = (
            "mount -t tmpfs -o mode=0755 z2z-testbed /run\n"
            "mkdir -p /run/avahi-daemon\n"
            "if [ -d /etc/avahi/services ]; then mount -t tmpfs z2z-testbed /etc/avahi/services; fi\n"
            f"exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f {d / 'avahi-daemon.conf'}\n"
        )
        daemon = self.spawn(
            host,
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
            name=f"{host}-avahi",
            env={"DBUS_SYSTEM_BUS_ADDRESS": address},
        )
        return Avahi(host, address, daemon, bus)

    # -- teardown -----------------------------------------------------------
    def dump_logs(self, lines: int = 40) -> str:
        """Tails of every process's output, for a failed test's report."""
        parts = [f"=== testbed {self.tag}: logs in {self.workdir}"]
        parts += [p.log_tail(lines) for p in self.procs]
        for log in sorted(self.workdir.glob("dht/dhtnode*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts += [f"--- {log.name}:", *tail]
        return "\n".join(parts)

    def close(self) -> None:
        """Kill every process, delete every namespace, remove the logs unless kept.

        Idempotent; also run at interpreter exit.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for proc in self.procs:
            if proc.alive:
                proc.stop(timeout=3)
        self.stop_dht(kill=True)
        for node in self.nodes.values():
            _kill_netns(node.netns)
        for node in self.nodes.values():
            node.ns.delete()
        if self.keep_logs:
            (self.workdir / KEEP_MARKER).touch()
            print(f"testbed {self.tag}: logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _kill_netns(name: str, timeout: float = 5.0) -> None:
    """SIGKILL everything in namespace `name` and wait until it is gone."""
    deadline = time.monotonic() + timeout
    while pids := [p for p in netns_pids(name) if p != os.getpid()]:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(names: Iterable[str] | None = None) -> list[str]:
    """Delete testbed namespaces (and log dirs) whose creating process is dead.

    That is what a crashed or SIGKILLed run leaves behind.  Namespaces of live
    runs are left alone, so parallel runs do not clash.
    """
    removed = []
    for name in names if names is not None else netns_names():
        m = _NS_RE.match(name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        _kill_netns(name)
        sh("ip", "netns", "del", name, check=False)
        removed.append(name)
    # Log directories of dead runs, unless kept on purpose (Z2Z_KEEP_LOGS).
    for d in Path(tempfile.gettempdir()).glob(f"z2z-testbed-{NS_PREFIX}*"):
        m = re.match(rf"z2z-testbed-{NS_PREFIX}(\d+)x", d.name)
        if m and not _pid_alive(int(m.group(1))) and not (d / KEEP_MARKER).exists():
            shutil.rmtree(d, ignore_errors=True)
    return removed
