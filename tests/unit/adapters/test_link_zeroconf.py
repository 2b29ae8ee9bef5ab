"""ZeroconfLink: pure helpers in-process, and real mDNS between two namespaces.

The netns test joins two namespaces with a veth pair: a plain python-zeroconf
peer (tests/tools/mdns_peer.py) on one side, a ZeroconfLink
(tests/tools/link_probe.py) on the other, both driven over JSON lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ifaddr
import pytest
from support.netns import Netns, have_netns, unique, veth
from zeroconf import IPVersion, ServiceInfo

from z2z.adapters.link.base import LinkError
from z2z.adapters.link.zeroconf import (
    ZeroconfLink,
    encode_txt,
    parse_txt,
    select_interfaces,
    service_from_info,
)
from z2z.core.records import Service

TOOLS = Path(__file__).resolve().parents[2] / "tools"
ROOT = Path(__file__).resolve().parents[3]

# ---------------------------------------------------------------------------
# pure helpers


def test_txt_round_trip_keeps_order_and_bytes() -> None:
    strings = (b"txtvers=1", b"flag", b"empty=", b"k=v=w", b"\xff\x00bin", b"x" * 255)
    assert parse_txt(encode_txt(strings)) == strings
    assert encode_txt(()) == b"\x00"
    assert parse_txt(b"\x00") == () and parse_txt(b"") == ()
    with pytest.raises(ValueError):
        parse_txt(b"\x05ab")
    with pytest.raises(ValueError):
        encode_txt([b"y" * 256])


def test_service_from_info_keeps_odd_instance_names() -> None:
    name = "Floor 2. Printer \\ Ünï ☃._ipp._tcp.local."
    info = ServiceInfo(
        "_ipp._tcp.local.",
        name,
        port=631,
        properties=encode_txt((b"b=2", b"a=1", b"flag")),
        server="printer-a.local.",
        parsed_addresses=["fd77:1::50", "10.77.1.50"],
    )
    assert service_from_info("_ipp._tcp", info) == Service(
        "_ipp._tcp",
        "Floor 2. Printer \\ Ünï ☃",
        "printer-a",
        631,
        (b"b=2", b"a=1", b"flag"),
        ("10.77.1.50", "fd77:1::50"),
    )
    no_srv = ServiceInfo("_ipp._tcp.local.", name)
    with pytest.raises(ValueError):
        service_from_info("_ipp._tcp", no_srv)


def _adapter(name: str, index: int, *ips: str) -> ifaddr.Adapter:
    return ifaddr.Adapter(
        name,
        name,
        [ifaddr.IP((ip, 0, index) if ":" in ip else ip, 64 if ":" in ip else 24, name) for ip in ips],
        index=index,
    )


def test_select_interfaces_maps_names_and_addresses() -> None:
    adapters = [
        _adapter("lo", 1, "127.0.0.1", "::1"),
        _adapter("lan0", 2, "10.77.1.2", "10.77.1.3", "fd77:1::2", "fe80::2"),
        _adapter("lan1", 3, "10.77.2.2"),
        _adapter("v6only", 4, "fe80::4"),
    ]
    # One IPv4 address and the IPv6 index per named interface; both families.
    assert select_interfaces(["lan0"], adapters=adapters) == (["10.77.1.2", 2], IPVersion.All)
    assert select_interfaces(["lan1"], adapters=adapters) == (["10.77.2.2"], IPVersion.V4Only)
    assert select_interfaces(["v6only"], adapters=adapters) == ([4], IPVersion.V6Only)
    assert select_interfaces(["10.77.1.3", "fe80::4%v6only"], adapters=adapters) == (
        ["10.77.1.3", 4],
        IPVersion.All,
    )
    assert select_interfaces(["lan0"], IPVersion.V4Only, adapters=adapters) == (
        ["10.77.1.2"],
        IPVersion.V4Only,
    )
    # Empty means every interface but loopback.
    assert select_interfaces([], adapters=adapters) == (
        ["10.77.1.2", 2, "10.77.2.2", 4],
        IPVersion.All,
    )
    with pytest.raises(LinkError, match=r"no such interface: lan9 \(available: lan0, lan1, lo"):
        select_interfaces(["lan9"], adapters=adapters)
    with pytest.raises(LinkError, match=r"no interface has address 10\.99\.0\.1"):
        select_interfaces(["10.99.0.1"], adapters=adapters)
    with pytest.raises(LinkError):
        select_interfaces(["lan1"], IPVersion.V6Only, adapters=adapters)


def test_unknown_interface_name_raises_link_error() -> None:
    with pytest.raises(LinkError, match=r"no such interface: z2z-nope0 \(available: "):
        ZeroconfLink(["z2z-nope0"])


def test_a_cached_name_is_taken_by_a_live_srv_or_a_fresh_ptr_not_by_a_stale_ptr() -> None:
    """Proxies' PTRs live 75 minutes and SRVs 120 s: a follower taking over from a leader that
    crashed minutes ago finds the old PTRs without SRVs and must keep the names."""
    from types import SimpleNamespace

    from zeroconf import DNSPointer, DNSService, current_time_millis
    from zeroconf._cache import DNSCache
    from zeroconf._services.registry import ServiceRegistry
    from zeroconf.const import _CLASS_IN, _CLASS_IN_UNIQUE, _TYPE_PTR, _TYPE_SRV

    from z2z.adapters.link.zeroconf import PROXY_HOST_TTL, PROXY_OTHER_TTL

    fq_type, name = "_ipp._tcp.local.", "Printer._ipp._tcp.local."
    ours = ServiceInfo(fq_type, name, port=631, server="printer-campus-a-z2z.local.", addresses=[b"\n\0\0\1"])
    link = ZeroconfLink(["127.0.0.1"])
    now = current_time_millis()

    def taken(*records: Any) -> bool:
        cache = DNSCache()
        cache.async_add_records(records)
        zc = SimpleNamespace(registry=ServiceRegistry(), cache=cache)
        return link._name_taken(zc, fq_type, name, ours)  # type: ignore[arg-type]

    def ptr(age_s: float) -> DNSPointer:
        return DNSPointer(fq_type, _TYPE_PTR, _CLASS_IN, PROXY_OTHER_TTL, name, created=now - age_s * 1000)

    def srv(server: str) -> DNSService:
        return DNSService(name, _TYPE_SRV, _CLASS_IN_UNIQUE, PROXY_HOST_TTL, 0, 0, 631, server, created=now)

    assert not taken()
    assert taken(ptr(5))  # a fresh PTR whose SRV we never saw: someone's
    assert not taken(ptr(600))  # a PTR heard of 10 minutes ago, its SRV gone: a crashed predecessor
    assert taken(ptr(600), srv("laptop.local."))  # a live SRV of another host: someone's
    assert not taken(ptr(5), srv("printer-campus-a-z2z.local."))  # the same proxy: ours to take over


# ---------------------------------------------------------------------------
# real mDNS in namespaces


class JsonProc:
    """A tool process in a namespace: JSON commands in, JSON events out."""

    def __init__(self, ns: Netns, script: str, *args: str) -> None:
        self.name = script
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = ns.popen(
            [sys.executable, str(TOOLS / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        self.events: list[dict[str, Any]] = []
        self._new: queue.Queue[None] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.events.append(event)
            self._new.put(None)

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()

    def matching(self, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if pred(e)]

    def expect(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 8.0) -> dict[str, Any]:
        """The first event (past or future) satisfying `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(pred)
            if found:
                return found[0]
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"{self.name}: no matching event; got {self.events}\n{self.log()}")
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=min(left, 0.2))

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(op="quit")
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


@pytest.fixture
def two_links() -> Iterator[tuple[Netns, Netns]]:
    """Namespaces `a` (10.77.1.1, fd77:1::1) and `b` (10.77.1.2, fd77:1::2) on one veth."""
    if not have_netns():
        pytest.skip("needs root and iproute2")
    a, b = Netns(unique("z2za")), Netns(unique("z2zb"))
    try:
        for ns in (a, b):
            # No duplicate address detection: tentative IPv6 addresses cannot be bound.
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")
        veth(a, "lan0", "10.77.1.1/24", b, "lan0", "10.77.1.2/24")
        a.ip("addr", "add", "fd77:1::1/64", "dev", "lan0", "nodad")
        b.ip("addr", "add", "fd77:1::2/64", "dev", "lan0", "nodad")
        yield a, b
    finally:
        a.delete()
        b.delete()


def _txt_hex(*strings: bytes) -> list[str]:
    return [s.hex() for s in strings]


def _register_cmd(op: str, name: str, server: str, txt: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "op": op,
        "type": "_ipp._tcp.local.",
        "name": f"{name}._ipp._tcp.local.",
        "server": server,
        "port": 631,
        "txt": txt,
        "addresses": ["10.77.1.50", "fd77:1::50"],
        **extra,
    }


@pytest.mark.netns
def test_zeroconf_link_over_real_mdns(two_links: tuple[Netns, Netns]) -> None:
    a, b = two_links
    peer = JsonProc(a, "mdns_peer.py", "--iface", "10.77.1.1", "--iface", "fd77:1::1",
                    "--type", "_ipp._tcp.local.", "--type", "_http._tcp.local.")  # fmt: skip
    link = JsonProc(b, "link_probe.py", "--iface", "lan0", "--type", "_ipp._tcp")
    try:
        peer.expect(lambda e: e["event"] == "ready")
        ready = link.expect(lambda e: e["event"] == "ready")
        assert len(ready["interfaces"]) == 2  # the IPv4 address and the IPv6 index of lan0

        def ups(instance: str) -> list[dict[str, Any]]:
            return link.matching(lambda e: e["event"] == "up" and e["service"]["instance"] == instance)

        # --- browse: services of a plain publisher are reported exactly -------------
        s1, s2 = "Floor 2. Printer", "Back\\slash Ünïcødé ☃ 2.0"
        txt1 = _txt_hex(b"txtvers=1", b"rp=ipp/print", b"Color=T", b"flag", b"empty=")
        big = [bytes([65 + i]) * 200 for i in range(12)]  # 2.4 KB of TXT
        peer.send(**_register_cmd("register", s1, "printer-a.local.", txt1))
        peer.send(**_register_cmd("register", s2, "printer-b.local.", _txt_hex(*big)))
        up1 = link.expect(lambda e: e["event"] == "up" and e["service"]["instance"] == s1)
        assert up1["service"] == {
            "type": "_ipp._tcp",
            "instance": s1,
            "host": "printer-a",
            "port": 631,
            "txt": txt1,
            "addresses": ["10.77.1.50", "fd77:1::50"],
        }
        up2 = link.expect(lambda e: e["event"] == "up" and e["service"]["instance"] == s2)
        assert up2["service"]["host"] == "printer-b"
        assert up2["service"]["txt"] == _txt_hex(*big)

        # Re-announcing the same records is not news; changed TXT is.
        peer.send(**_register_cmd("update", s1, "printer-a.local.", txt1))
        peer.expect(lambda e: e["event"] == "updated")
        time.sleep(1.0)
        assert len(ups(s1)) == 1
        txt1b = _txt_hex(b"txtvers=1", b"rp=ipp/print", b"Color=F")
        peer.send(**_register_cmd("update", s1, "printer-a.local.", txt1b))
        link.expect(lambda e: e["event"] == "up" and e["service"]["txt"] == txt1b)

        peer.send(op="unregister", name=f"{s2}._ipp._tcp.local.")
        link.expect(lambda e: e["event"] == "down" and e["instance"] == s2)

        # --- publish: a proxy is visible to a plain browser ----------------------------
        proxy: dict[str, Any] = {
            "type": "_ipp._tcp",
            "instance": "Lab Printer @ campus-a",
            "host": "printer-campus-a-z2z",
            "port": 631,
            "txt": _txt_hex(b"txtvers=1", b"note=proxied", b"flag", b"empty="),
            "addresses": ["10.77.9.9", "fd77:9::9"],
        }
        proxy_name = "Lab Printer @ campus-a._ipp._tcp.local."
        link.send(op="publish", service=proxy)
        published = link.expect(lambda e: e["event"] == "published")
        assert published["instance"] == proxy["instance"]
        seen = peer.expect(lambda e: e["event"] == "resolved" and e["name"] == proxy_name)
        assert seen["server"] == "printer-campus-a-z2z.local."
        assert seen["port"] == 631
        assert seen["text"] == encode_txt([bytes.fromhex(t) for t in proxy["txt"]]).hex()
        assert seen["addresses"] == ["10.77.9.9", "fd77:9::9"]
        fast_latency = seen["t"] - published["t0"]

        # Same key, new TXT: updated in place under the same name.
        proxy2 = {**proxy, "txt": _txt_hex(b"txtvers=1", b"note=changed")}
        link.send(op="publish", service=proxy2)
        again = link.expect(lambda e: e["event"] == "published" and e["t0"] > published["t0"])
        assert again["instance"] == proxy["instance"]
        peer.expect(
            lambda e: (
                e["event"] == "resolved"
                and e["name"] == proxy_name
                and e["text"] == encode_txt([b"txtvers=1", b"note=changed"]).hex()
            )
        )

        # A type the link does not browse is probed first (python-zeroconf's ~1.2 s).
        web = {**proxy, "type": "_http._tcp", "instance": "Wiki", "port": 80, "txt": []}
        link.send(op="publish", service=web)
        web_pub = link.expect(lambda e: e["event"] == "published" and e["instance"] == "Wiki")
        web_seen = peer.expect(lambda e: e["event"] == "resolved" and e["name"] == "Wiki._http._tcp.local.")
        assert web_seen["text"] == "00"  # no TXT strings: the one empty string
        probed_latency = web_seen["t"] - web_pub["t0"]

        # Withdrawn and published again at once (a remote service that came back): our own
        # goodbye, still in the cache for a second, must not make the probe rename it.
        link.send(op="withdraw", type="_http._tcp", instance="Wiki")
        link.expect(lambda e: e["event"] == "withdrawn" and e["instance"] == "Wiki")
        link.send(op="publish", service=web)
        back = link.expect(
            lambda e: e["event"] == "published" and e["asked"] == "Wiki" and e["t0"] > web_pub["t0"]
        )
        assert back["instance"] == "Wiki"

        # A name already on the link is renamed, as allow_name_change would.
        clash = {**proxy, "instance": s1, "host": "clash-z2z"}
        link.send(op="publish", service=clash)
        renamed = link.expect(lambda e: e["event"] == "published" and e["asked"] == s1)
        assert renamed["instance"] == f"{s1}-2"

        # withdraw sends goodbyes.
        link.send(op="withdraw", type="_ipp._tcp", instance=proxy["instance"])
        gone = link.expect(lambda e: e["event"] == "withdrawn")
        removed = peer.expect(lambda e: e["event"] == "removed" and e["name"] == proxy_name)
        withdraw_latency = removed["t"] - gone["t0"]

        # The plain publisher's goodbye reaches the link as service_down.
        peer.send(op="unregister", name=f"{s1}._ipp._tcp.local.")
        link.expect(lambda e: e["event"] == "down" and e["instance"] == s1)

        # close() says goodbye for what is still published.
        link.send(op="quit")
        link.expect(lambda e: e["event"] == "closed")
        peer.expect(lambda e: e["event"] == "removed" and e["name"] == "Wiki._http._tcp.local.")

        # The link never reported its own proxies as local services.
        assert not ups(proxy["instance"]) and not ups(f"{s1}-2")
        assert not link.matching(lambda e: e["event"] == "error")
        print(
            f"\npublish->visible: {fast_latency * 1000:.1f} ms (browsed type, no probe), "
            f"{probed_latency * 1000:.1f} ms (probed); "
            f"withdraw->removed: {withdraw_latency * 1000:.1f} ms"
        )
        assert fast_latency < 1.0, "publishing a browsed type should not wait for probes"
    finally:
        link.stop()
        peer.stop()
