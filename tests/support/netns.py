"""Network namespaces for tests: real links, real sockets, real multicast.

Only loopback-range and private test addresses inside namespaces this process
created are used; everything is torn down on exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence


def have_netns() -> bool:
    """True when this process may create namespaces (root with iproute2)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Netns:
    """One named network namespace, deleted by `delete()`."""

    def __init__(self, name: str) -> None:
        self.name = name
        sh("ip", "netns", "add", name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args: str) -> None:
        sh("ip", "-n", self.name, *args)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *args, check=check)

    def popen(self, args: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kw)  # type: ignore[call-overload]

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-qw", f"{key}={value}")

    def delete(self) -> None:
        sh("ip", "netns", "del", self.name, check=False)


def unique(prefix: str) -> str:
    """A short unique name (interface names are limited to 15 bytes)."""
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def veth(a: Netns, a_if: str, a_addr: str, b: Netns, b_if: str, b_addr: str) -> None:
    """Join two namespaces with a veth pair and address both ends (CIDR notation)."""
    tmp_a, tmp_b = unique("va"), unique("vb")
    sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
    sh("ip", "link", "set", tmp_a, "netns", a.name, "name", a_if)
    sh("ip", "link", "set", tmp_b, "netns", b.name, "name", b_if)
    for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
        ns.ip("addr", "add", addr, "dev", ifname)
        ns.ip("link", "set", ifname, "up", "multicast", "on")


def veth_pair(a: Netns, a_if: str, b: Netns, b_if: str) -> None:
    """Join two namespaces with an unaddressed veth pair, both ends up.

    Unlike `veth`, nothing is addressed: one end usually becomes a bridge port.
    """
    tmp_a, tmp_b = unique("va"), unique("vb")
    sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
    sh("ip", "link", "set", tmp_a, "netns", a.name, "name", a_if)
    sh("ip", "link", "set", tmp_b, "netns", b.name, "name", b_if)
    for ns, ifname in ((a, a_if), (b, b_if)):
        ns.ip("link", "set", ifname, "up", "multicast", "on")


def netns_pids(name: str) -> list[int]:
    """Pids of every process living in namespace `name` (daemons that forked too)."""
    out = sh("ip", "netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def netns_names() -> list[str]:
    """Names of all namespaces known to `ip netns` (whoever created them)."""
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]
