"""RFC 6763 §11 browse-domain discovery: `b`/`db`/`lb._dns-sd._udp` under the
reverse-mapping domains of the served prefixes, and nothing else of those trees."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest
from dnslib import QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord

from z2z.adapters.dns import DnsSdServer, DnsSdZone
from z2z.adapters.dns.prefixes import interface_prefixes
from z2z.adapters.dns.zone import browse_zones
from z2z.core.records import Service

DOMAIN = "campus.example."
PRINTER = Service("_ipp._tcp", "Printer", "printer", 631, (b"rp=ipp/print",), ("10.88.2.10",))
PREFIXES = ("10.88.2.0/24", "fd88:2::/64")
REV4 = "_dns-sd._udp.0.2.88.10.in-addr.arpa."
REV6 = "_dns-sd._udp." + "0." * 16 + "0.0.0.0.0.0.0.0.2.0.0.0.8.8.d.f.ip6.arpa."


def ask(zone: DnsSdZone, name: str, qtype: str) -> DNSRecord:
    msg = DNSRecord(DNSHeader(id=7, rd=1), q=DNSQuestion(name, getattr(QTYPE, qtype)))
    wire = zone.answer(bytes(msg.pack()), 512)
    assert wire is not None
    return DNSRecord.parse(wire)


@pytest.fixture
def zone() -> DnsSdZone:
    return DnsSdZone(DOMAIN, [PRINTER], browse_prefixes=PREFIXES)


def test_reverse_names_follow_rfc_6763_section_11() -> None:
    # the example of the RFC's text: the host part zeroed, then the in-addr.arpa name
    assert browse_zones(["10.88.2.77/24"]) == (REV4,)
    assert browse_zones(["fd88:2::/64", "fd88:2::1/64"]) == (REV6,)  # duplicates collapse
    assert browse_zones(["192.168.1.0/24"]) == ("_dns-sd._udp.0.1.168.192.in-addr.arpa.",)
    with pytest.raises(ValueError, match=r"'10\.88\.2\.0/33' is not an IP prefix"):
        browse_zones(["10.88.2.0/33"])
    with pytest.raises(ValueError, match="'campus' is not an IP prefix"):
        browse_zones(["campus"])


@pytest.mark.parametrize("rev", [REV4, REV6])
@pytest.mark.parametrize("kind", ["b", "db", "lb"])
def test_browse_ptrs_under_each_reverse_domain_name_the_domain(zone: DnsSdZone, rev: str, kind: str) -> None:
    r = ask(zone, f"{kind}.{rev}", "PTR")
    assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1
    assert [str(rr.rdata.label) for rr in r.rr] == [DOMAIN]
    assert r.rr[0].ttl <= 10


def test_the_domains_own_browse_ptrs_stay(zone: DnsSdZone) -> None:
    for kind in ("b", "db", "lb"):
        r = ask(zone, f"{kind}._dns-sd._udp.{DOMAIN}", "PTR")
        assert [str(rr.rdata.label) for rr in r.rr] == [DOMAIN]


def test_each_reverse_browse_zone_has_its_own_soa_for_negative_answers(zone: DnsSdZone) -> None:
    (soa,) = ask(zone, REV4, "SOA").rr
    assert str(soa.rname) == REV4 and soa.rdata.times[4] <= 10
    assert [str(rr.rdata.label) for rr in ask(zone, REV4, "NS").rr] == [f"ns.{DOMAIN}"]
    # registration domains are not offered; a made-up name is NXDOMAIN with this zone's SOA
    for name, rcode in ((f"r.{REV4}", RCODE.NXDOMAIN), (f"x.b.{REV4}", RCODE.NXDOMAIN), (f"b.{REV4}", 0)):
        r = ask(zone, name, "TXT")
        assert r.header.rcode == rcode and not r.rr
        assert [str(rr.rname) for rr in r.auth] == [REV4]


@pytest.mark.parametrize(
    "name",
    [
        "0.2.88.10.in-addr.arpa.",  # the reverse zone itself is someone else's
        "10.2.88.10.in-addr.arpa.",  # a host's PTR
        "_udp.0.2.88.10.in-addr.arpa.",
        "b._dns-sd._udp.0.3.88.10.in-addr.arpa.",  # a subnet not served
        "b._dns-sd._udp.in-addr.arpa.",
        "in-addr.arpa.",
        "ip6.arpa.",
        "example.org.",
    ],
)
def test_the_rest_of_the_reverse_trees_is_refused(zone: DnsSdZone, name: str) -> None:
    r = ask(zone, name, "PTR")
    assert r.header.rcode == RCODE.REFUSED and not r.rr and not r.auth


def test_without_prefixes_reverse_names_are_refused() -> None:
    plain = DnsSdZone(DOMAIN, [PRINTER])
    assert plain.browse_zones == ()
    assert ask(plain, f"b.{REV4}", "PTR").header.rcode == RCODE.REFUSED


def test_bad_prefix_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="browse prefix 'nope' is not an IP prefix"):
        DnsSdZone(DOMAIN, browse_prefixes=["nope"])


@pytest.fixture
async def server() -> AsyncIterator[DnsSdServer]:
    srv = DnsSdServer(DnsSdZone(DOMAIN, [PRINTER], browse_prefixes=PREFIXES), "127.0.0.1", 0)
    await srv.start()
    yield srv
    await srv.close()


@pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig (dnsutils)")
async def test_dig_finds_the_domain_from_the_subnet_alone(server: DnsSdServer) -> None:
    """A real resolver library (dig's) asks the §11 names and reads the answers."""

    def dig(*args: str) -> list[str]:
        out = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(server.port), "+short", "+time=2", "+tries=1", *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.split()

    assert await asyncio.to_thread(dig, "PTR", f"b.{REV4}") == [DOMAIN]
    assert await asyncio.to_thread(dig, "PTR", f"lb.{REV6}") == [DOMAIN]
    assert await asyncio.to_thread(dig, "PTR", "_ipp._tcp." + DOMAIN) == ["Printer._ipp._tcp." + DOMAIN]


def test_interface_prefixes_default_to_the_bridged_links_without_link_local() -> None:
    from ifaddr import IP, Adapter

    lo = Adapter("lo", "lo", [IP("127.0.0.1", 8, "lo"), IP(("::1", 0, 0), 128, "lo")])
    lan = Adapter(
        "lan0",
        "lan0",
        [IP("10.88.2.2", 24, "lan0"), IP(("fd88:2::2", 0, 0), 64, "lan0"), IP(("fe80::1", 0, 2), 64, "lan0")],
    )
    wan = Adapter("wan0", "wan0", [IP("192.0.2.7", 28, "wan0")])
    adapters = [lo, lan, wan]
    assert interface_prefixes(["lan0"], adapters) == ("10.88.2.0/24", "fd88:2::/64")
    assert interface_prefixes(["10.88.2.2"], adapters) == ("10.88.2.0/24", "fd88:2::/64")
    assert interface_prefixes([], adapters) == ("10.88.2.0/24", "fd88:2::/64", "192.0.2.0/28")
    assert interface_prefixes(["eth9"], adapters) == ()
