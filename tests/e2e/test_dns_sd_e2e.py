"""The dns-sd tools everywhere (issue 12), judged by real clients: dig, Avahi's wide-area
browser (a real avahi-daemon) and a real campus resolver (Debian's Unbound).

* A client configured with nothing but a DNS server finds the gateway's domain by
  itself: RFC 6763 §11 PTRs under the reverse-mapping domain of its subnet.
* Clients that ask only the campus resolver (Unbound forwarding the domain and the
  reverse `_dns-sd._udp` names to the gateway) browse and resolve remote services.
* With `dns-local = true`, another subnet browses campus B's own printer over
  unicast DNS only (RFC 8766 discovery proxy role).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.testbed import Proc, Testbed

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig (Debian package dnsutils)"),
]

T = "_ipp._tcp"
DOMAIN = "campus.example."
B_GW = "10.77.2.2"
REV4_B = "_dns-sd._udp.0.2.77.10.in-addr.arpa."  # RFC 6763 §11 name for 10.77.2.0/24
REV6_B = "_dns-sd._udp." + "0." * 16 + "0.0.0.0.0.0.0.0.2.0.0.0.7.7.d.f.ip6.arpa."  # fd77:2::/64

needs_avahi = pytest.mark.skipif(
    shutil.which("avahi-browse") is None or shutil.which("avahi-daemon") is None,
    reason="needs avahi-daemon and avahi-utils",
)
needs_unbound = pytest.mark.skipif(shutil.which("unbound") is None, reason="needs unbound (Debian package)")


def start_gateways(tb: Testbed, b_extra: Sequence[str] = ()) -> dict[str, Proc]:
    """Gateways on both campuses through the real dhtnode rendezvous; B serves unicast DNS-SD."""
    dht = tb.start_dht()
    procs: dict[str, Proc] = {}
    for host, site, url, extra in (
        ("a-gw", "campus-a", dht.proxy_urls[0], ()),
        (
            "b-gw",
            "campus-b",
            dht.proxy_urls[1],
            ("--dns-listen", f"{B_GW}:53", "--dns-domain", DOMAIN, *b_extra),
        ),
    ):
        gw = tb.spawn(
            host,
            [
                sys.executable,
                "-m",
                "z2z",
                "run",
                "--public",
                "--site",
                site,
                "--interface",
                "lan0",
                "--rendezvous",
                url,
                "--type",
                T,
                "--state-dir",
                str(tb.workdir / host),
                *extra,
            ],
            name=f"{host}-z2z",
        )
        gw.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
        procs[host] = gw
    return procs


def start_printer(tb: Testbed, host: str, name: str, address: str) -> Proc:
    printer = tb.spawn_tool(
        host,
        "mdns_printer",
        "--name",
        name,
        "--type",
        T,
        "--port",
        "631",
        "--host",
        "printer",
        "--address",
        address,
        "--txt",
        "rp=ipp/print",
    )
    printer.wait_event("registered", timeout=15)
    return printer


def dig(tb: Testbed, host: str, server: str, *args: str) -> list[str]:
    out = tb.node(host).run("dig", f"@{server}", "+short", "+time=2", "+tries=2", *args, check=False)
    return [line for line in out.stdout.splitlines() if line]


def dig_status(tb: Testbed, host: str, server: str, *args: str) -> str:
    out = tb.node(host).run("dig", f"@{server}", "+time=2", "+tries=2", *args, check=False)
    for line in out.stdout.splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(",")[0].strip()
    return f"no answer: {out.stdout} {out.stderr}"


def poll(
    what: str, probe: Callable[[], list[str]], ok: Callable[[list[str]], bool], timeout: float
) -> list[str]:
    deadline = time.monotonic() + timeout
    got = probe()
    while not ok(got) and time.monotonic() < deadline:
        time.sleep(0.5)
        got = probe()
    assert ok(got), f"{what}: still {got!r} after {timeout} s"
    return got


@contextmanager
def resolv_conf(tb: Testbed, host: str, text: str) -> Iterator[None]:
    """/etc/resolv.conf as seen inside `host`'s namespace (`ip netns exec` bind-mounts it)."""
    netns_etc = Path("/etc/netns") / tb.node(host).netns
    netns_etc.mkdir(parents=True, exist_ok=True)
    try:
        (netns_etc / "resolv.conf").write_text(text)
        yield
    finally:
        shutil.rmtree(netns_etc, ignore_errors=True)


def avahi_browse(tb: Testbed, host: str, env: dict[str, str], *args: str) -> list[list[str]]:
    out = tb.node(host).run("avahi-browse", "-tp", *args, env=env, check=False, timeout=30)
    return [line.split(";") for line in out.stdout.splitlines()]


@needs_avahi
def test_a_client_with_only_a_dns_server_finds_the_domain(testbed: Testbed) -> None:
    """RFC 6763 §11 with the real dig and Avahi's real wide-area domain browser."""
    tb = testbed
    with resolv_conf(tb, "b-client", f"nameserver {B_GW}\n"):  # Avahi asks port 53 of these
        avahi = tb.start_avahi("b-client", wide_area=True)
        start_gateways(tb)  # default dns-prefixes: the prefixes of lan0 (10.77.2.0/24, fd77:2::/64)
        for kind in ("b", "db", "lb"):
            assert dig(tb, "b-client", B_GW, "PTR", f"{kind}.{REV4_B}") == [DOMAIN]
            assert dig(tb, "b-client", B_GW, "PTR", f"{kind}.{REV6_B}") == [DOMAIN]
        assert dig_status(tb, "b-client", B_GW, "SOA", REV4_B) == "NOERROR"
        # not an open resolver, and not the reverse zone's server either
        assert dig_status(tb, "b-client", B_GW, "PTR", "20.2.77.10.in-addr.arpa") == "REFUSED"
        assert dig_status(tb, "b-client", B_GW, "PTR", "b._dns-sd._udp.0.1.77.10.in-addr.arpa") == "REFUSED"
        assert dig_status(tb, "b-client", B_GW, "A", "example.org") == "REFUSED"
        # Avahi's browse-domain browser asks b._dns-sd._udp.<domain> over unicast DNS
        rows = poll(
            "avahi-browse -D under the reverse domain",
            lambda: [
                ";".join(r)
                for r in avahi_browse(tb, "b-client", avahi.env, "-D", "-d", REV4_B[len("_dns-sd._udp.") :])
            ],
            lambda rows: any(r.startswith("+") and r.endswith(";" + DOMAIN.rstrip(".")) for r in rows),
            timeout=20,
        )
        assert all(r.split(";")[-1] == DOMAIN.rstrip(".") for r in rows if r.startswith("+")), rows


REPO = Path(__file__).resolve().parents[2]


def unbound_snippet() -> str:
    """The Unbound snippet of docs/dns-sd.md, with the testbed's addresses in place of the doc's."""
    text = (REPO / "docs" / "dns-sd.md").read_text()
    block = text.split("<!-- BEGIN unbound snippet")[1].split("<!-- END unbound snippet")[0]
    body = block.split("```text\n")[1].split("```")[0]
    replaced = (
        body.replace("10.88.2.2", B_GW)
        .replace("0.2.88.10.in-addr.arpa", "0.2.77.10.in-addr.arpa")
        .replace("2.0.0.0.8.8.d.f.ip6.arpa", "2.0.0.0.7.7.d.f.ip6.arpa")
    )
    assert "88" not in replaced, "docs/dns-sd.md's Unbound snippet changed: update the substitutions"
    return replaced


def start_unbound(tb: Testbed, host: str = "rb") -> Proc:
    """A real Unbound on campus B's router: its own config file, in the foreground, no root hints
    used (nothing but the stub zones resolves here), no machine-wide service touched."""
    node = tb.node(host)
    d = tb.workdir / f"unbound-{host}"
    d.mkdir()
    conf = d / "unbound.conf"
    conf.write_text(
        "server:\n"
        f"    interface: {node.ipv4}\n"
        "    port: 53\n"
        "    access-control: 10.77.0.0/16 allow\n"
        "    do-daemonize: no\n"
        '    username: ""\n'
        '    chroot: ""\n'
        f'    directory: "{d}"\n'
        f'    pidfile: "{d}/unbound.pid"\n'
        "    use-syslog: no\n"
        '    logfile: ""\n'
        "    verbosity: 1\n"
        '    module-config: "iterator"\n'
        "remote-control:\n"
        "    control-enable: no\n"
        "\n" + unbound_snippet()
    )
    tb.node(host).run("unbound-checkconf", str(conf))
    proc = tb.spawn(host, ["unbound", "-d", "-c", str(conf)], name=f"{host}-unbound")
    proc.wait_line(r"start of service", timeout=15, stream="stderr")
    return proc


@needs_avahi
@needs_unbound
def test_clients_of_a_real_unbound_browse_and_resolve_remote_services(testbed: Testbed) -> None:
    """Unbound forwards (stub zones from docs/dns-sd.md) the domain and the §11 names to the
    gateway; dig and avahi-browse -d, asking only Unbound, find campus A's printer."""
    tb = testbed
    resolver = tb.node("rb").ipv4
    start_unbound(tb)
    with resolv_conf(tb, "b-client", f"nameserver {resolver}\n"):
        avahi = tb.start_avahi("b-client", wide_area=True)
        start_gateways(tb)
        start_printer(tb, "a-printer", "Campus Printer", "10.77.1.10")
        # §11 through the resolver: the client knows nothing but its DNS server
        assert dig(tb, "b-client", resolver, "PTR", f"b.{REV4_B}") == [DOMAIN]
        assert dig(tb, "b-client", resolver, "PTR", f"lb.{REV6_B}") == [DOMAIN]
        instance = f"Campus\\032Printer.{T}.{DOMAIN}"
        poll(
            "PTR through Unbound",
            lambda: dig(tb, "b-client", resolver, "PTR", f"{T}.{DOMAIN}"),
            lambda got: got == [instance],
            timeout=30,
        )
        [srv] = dig(tb, "b-client", resolver, "SRV", instance)
        assert srv.split()[2:] == ["631", f"printer-campus-a-z2z.{DOMAIN}"]
        assert dig(tb, "b-client", resolver, "TXT", instance) == ['"rp=ipp/print"']
        assert dig(tb, "b-client", resolver, "A", f"printer-campus-a-z2z.{DOMAIN}") == ["10.77.1.10"]
        # the resolver's answers carry no AA: they really came through Unbound
        out = tb.node("b-client").run("dig", f"@{resolver}", "PTR", f"{T}.{DOMAIN}")
        assert "flags: qr rd ra;" in out.stdout, out.stdout
        rows = poll(
            "avahi-browse -d through Unbound",
            lambda: [";".join(r) for r in avahi_browse(tb, "b-client", avahi.env, "-r", "-d", DOMAIN, T)],
            lambda rows: any(r.startswith("=") for r in rows),
            timeout=30,
        )
        fields = next(r for r in rows if r.startswith("=")).split(";")
        assert fields[3] == "Campus\\032Printer" and fields[5] == DOMAIN.rstrip(".")
        assert fields[6] == f"printer-campus-a-z2z.{DOMAIN.rstrip('.')}"
        assert (fields[7], fields[8]) == ("10.77.1.10", "631")
        assert '"rp=ipp/print"' in fields[9]
        rows = [
            ";".join(r)
            for r in avahi_browse(tb, "b-client", avahi.env, "-D", "-d", REV4_B[len("_dns-sd._udp.") :])
        ]
        assert any(r.startswith("+") and r.endswith(";" + DOMAIN.rstrip(".")) for r in rows), rows
