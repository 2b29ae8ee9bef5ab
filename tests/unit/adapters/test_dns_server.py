"""The unicast DNS-SD server: answer rules of the pure zone, hostile input, and real clients (dig)."""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from dnslib import CLASS, EDNS0, QTYPE, RCODE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from z2z.adapters.dns import DnsSdServer, DnsSdZone, parse_listen
from z2z.core.records import Service

DOMAIN = "campus.example."
DOM = [b"campus", b"example"]
DOTTED = "Floor 2. Printer Ü"  # dots, spaces and UTF-8 inside one label
PRINTER = Service(
    "_ipp._tcp", DOTTED, "printer", 631, (b"txtvers=1", b"rp=ipp/print", b"flag"), ("10.1.2.3", "2001:db8::5")
)
LASER = Service("_ipp._tcp", "Laser", "laser", 631, (), ("10.1.2.4",))
WEB = Service("_http._tcp", "web", "box", 80, (b"path=/",), ("10.0.0.1",))
SERVICES = [PRINTER, LASER, WEB]


def lbl(*labels: str | bytes) -> DNSLabel:
    """A name from raw labels (so a dot stays inside its label), in DOMAIN."""
    return DNSLabel([x.encode() if isinstance(x, str) else x for x in labels] + DOM)


def query(
    name: DNSLabel | str,
    qtype: int | str,
    *,
    payload: int | None = None,
    do: bool = False,
    version: int = 0,
    qclass: int = CLASS.IN,
    qid: int = 4711,
) -> bytes:
    qt = getattr(QTYPE, qtype) if isinstance(qtype, str) else qtype
    msg = DNSRecord(DNSHeader(id=qid, rd=1), q=DNSQuestion(name, qt, qclass))
    if payload is not None or do:
        msg.add_ar(EDNS0(udp_len=payload or 512, flags="do" if do else "", version=version))
    return bytes(msg.pack())


def ask(
    zone: DnsSdZone, name: DNSLabel | str, qtype: int | str, max_size: int = 512, **kw: object
) -> DNSRecord:
    wire = zone.answer(query(name, qtype, **kw), max_size)  # type: ignore[arg-type]
    assert wire is not None
    assert len(wire) <= max(max_size, zone.max_udp_payload if "payload" in kw else 0)
    return DNSRecord.parse(wire)


def rrs(msg: DNSRecord, section: str = "rr", rtype: int | None = None) -> list:
    return [r for r in getattr(msg, section) if rtype is None or r.rtype == rtype]


@pytest.fixture
def zone() -> DnsSdZone:
    return DnsSdZone(DOMAIN, SERVICES)


# --- answers of the pure zone -----------------------------------------------------------------


def test_ptr_lists_each_instance_with_srv_txt_and_addresses_as_additional(zone: DnsSdZone) -> None:
    r = ask(zone, lbl("_ipp", "_tcp"), "PTR")
    assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1 and r.header.qr == 1 and r.header.id == 4711
    targets = {tuple(a.rdata.label.label) for a in rrs(r)}
    assert targets == {tuple(lbl(DOTTED, "_ipp", "_tcp").label), tuple(lbl("Laser", "_ipp", "_tcp").label)}
    extra = {(str(a.rname).lower(), QTYPE[a.rtype]) for a in r.ar}
    assert ("printer.campus.example.", "A") in extra and ("printer.campus.example.", "AAAA") in extra
    assert ("laser.campus.example.", "A") in extra
    assert len(rrs(r, "ar", QTYPE.SRV)) == 2 and len(rrs(r, "ar", QTYPE.TXT)) == 2
    assert not r.auth


def test_srv_and_txt_of_an_instance_whose_label_holds_dots_spaces_and_utf8(zone: DnsSdZone) -> None:
    name = lbl(DOTTED, "_ipp", "_tcp")
    srv = ask(zone, name, "SRV")
    (answer,) = rrs(srv)
    assert answer.rdata.port == 631 and answer.rdata.target == "printer.campus.example."
    assert {str(a.rdata) for a in srv.ar} == {"10.1.2.3", "2001:db8::5"}
    txt = ask(zone, name, "TXT")
    assert [bytes(s) for s in rrs(txt)[0].rdata.data] == [b"txtvers=1", b"rp=ipp/print", b"flag"]
    anything = ask(zone, name, "ANY")
    assert {a.rtype for a in rrs(anything)} == {QTYPE.SRV, QTYPE.TXT}
    # The same bytes split at the dots are another (absent) name.
    assert (
        ask(zone, DNSLabel([b"Floor 2", b" Printer \xc3\x9c", b"_ipp", b"_tcp", *DOM]), "SRV").header.rcode
        == 3
    )


def test_empty_txt_is_served_as_one_empty_string(zone: DnsSdZone) -> None:
    (answer,) = rrs(ask(zone, lbl("Laser", "_ipp", "_tcp"), "TXT"))
    assert [bytes(s) for s in answer.rdata.data] == [b""]


def test_a_and_aaaa_of_hosts(zone: DnsSdZone) -> None:
    assert [str(a.rdata) for a in rrs(ask(zone, lbl("printer"), "A"))] == ["10.1.2.3"]
    assert [str(a.rdata) for a in rrs(ask(zone, lbl("printer"), "AAAA"))] == ["2001:db8::5"]
    assert [str(a.rdata) for a in rrs(ask(zone, lbl("box"), "A"))] == ["10.0.0.1"]


def test_hosts_shared_by_services_are_served_once() -> None:
    z = DnsSdZone(
        DOMAIN, [PRINTER, Service("_pdl-datastream._tcp", "raw", "printer", 9100, (), PRINTER.addresses)]
    )
    assert len(rrs(ask(z, lbl("printer"), "A"))) == 1


def test_browse_domain_and_service_type_enumeration(zone: DnsSdZone) -> None:
    for prefix in ("b", "db", "lb"):
        (answer,) = rrs(ask(zone, lbl(prefix, "_dns-sd", "_udp"), "PTR"))
        assert answer.rdata.label == DOMAIN
    types = {str(a.rdata.label) for a in rrs(ask(zone, lbl("_services", "_dns-sd", "_udp"), "PTR"))}
    assert types == {"_ipp._tcp.campus.example.", "_http._tcp.campus.example."}
    # Registration domains are not offered: the gateway accepts no updates.
    assert ask(zone, lbl("r", "_dns-sd", "_udp"), "PTR").header.rcode == RCODE.NXDOMAIN


def test_soa_and_ns_at_the_apex_with_in_zone_nameserver_addresses() -> None:
    z = DnsSdZone(
        DOMAIN, SERVICES, nameserver="gw.campus.example.", nameserver_addresses=["10.9.9.9", "fd00::9"]
    )
    (soa,) = rrs(ask(z, DOMAIN, "SOA"))
    assert soa.rdata.mname == "gw.campus.example." and soa.rdata.times[4] <= 10
    ns = ask(z, DOMAIN, "NS")
    assert rrs(ns)[0].rdata.label == "gw.campus.example."
    assert {str(a.rdata) for a in ns.ar} == {"10.9.9.9", "fd00::9"}
    assert [str(a.rdata) for a in rrs(ask(z, "gw.campus.example.", "A"))] == ["10.9.9.9"]
    outside = DnsSdZone(DOMAIN, nameserver="ns1.provider.example.")
    assert rrs(ask(outside, DOMAIN, "NS"))[0].rdata.label == "ns1.provider.example."


@pytest.mark.parametrize(
    ("labels", "qtype", "rcode"),
    [
        (("_tcp",), "PTR", RCODE.NOERROR),  # empty non-terminal
        (("_udp",), "A", RCODE.NOERROR),  # above _dns-sd._udp
        (("_dns-sd", "_udp"), "PTR", RCODE.NOERROR),
        (("_ipp", "_tcp"), "SRV", RCODE.NOERROR),  # exists with PTR only
        (("Laser", "_ipp", "_tcp"), "A", RCODE.NOERROR),  # exists with SRV/TXT only
        (("laser",), "AAAA", RCODE.NOERROR),  # host with only an A
        ((), "A", RCODE.NOERROR),  # the apex
        (("nope", "_ipp", "_tcp"), "SRV", RCODE.NXDOMAIN),
        (("_printer", "_tcp"), "PTR", RCODE.NXDOMAIN),
        (("x", "laser"), "A", RCODE.NXDOMAIN),
        (("_udp2",), "A", RCODE.NXDOMAIN),
    ],
)
def test_nxdomain_and_nodata_carry_the_soa(
    zone: DnsSdZone, labels: tuple[str, ...], qtype: str, rcode: int
) -> None:
    r = ask(zone, lbl(*labels), qtype)
    assert r.header.rcode == rcode and r.header.aa == 1 and not r.rr
    (soa,) = r.auth
    assert soa.rtype == QTYPE.SOA and soa.ttl <= 10 and soa.rdata.times[4] <= 10


@pytest.mark.parametrize("name", ["example.org.", "example.", "xcampus.example.", "campus.example.org.", "."])
def test_names_outside_the_domain_are_refused(zone: DnsSdZone, name: str) -> None:
    r = ask(zone, name, "A")
    assert r.header.rcode == RCODE.REFUSED and r.header.aa == 0 and not r.rr and not r.auth


def test_other_classes_and_zone_transfers_are_refused(zone: DnsSdZone) -> None:
    assert ask(zone, DOMAIN, "TXT", qclass=CLASS.CH).header.rcode == RCODE.REFUSED
    assert ask(zone, DOMAIN, "AXFR").header.rcode == RCODE.REFUSED
    assert ask(zone, DOMAIN, 254).header.rcode == RCODE.NOTIMP  # MAILA
    assert rrs(ask(zone, lbl("laser"), "A", qclass=255))  # QCLASS * (ANY) means IN here


def test_every_ttl_is_capped() -> None:
    z = DnsSdZone(DOMAIN, SERVICES, ttl=4500)
    for name, t in [(lbl("_ipp", "_tcp"), "PTR"), (DOMAIN, "ANY"), (lbl("lb", "_dns-sd", "_udp"), "PTR")]:
        r = ask(z, name, t)
        assert r.rr and all(a.ttl <= 10 for a in (*r.rr, *r.ar) if a.rtype != QTYPE.OPT)
    assert {a.ttl for a in z.records()} == {9}  # DEFAULT_TTL_CAP: a resolver keeps it ≤ 10 s
    soa = next(a for a in z.records() if a.rtype == QTYPE.SOA)
    assert soa.rdata.times[4] == 9  # negative caching (RFC 2308) no longer than positive
    assert {a.ttl for a in DnsSdZone(DOMAIN, SERVICES, max_ttl=3).records()} == {3}
    assert {a.ttl for a in DnsSdZone(DOMAIN, SERVICES, ttl=2).records()} == {2}


def many(n: int, stype: str = "_ipp._tcp") -> list[Service]:
    return [
        Service(
            stype,
            f"Printer {i:03d} in room {i}",
            f"p{i}",
            631,
            (b"rp=ipp/print",),
            (f"10.2.{i // 250}.{i % 250 + 1}",),
        )
        for i in range(n)
    ]


def test_200_instances_truncate_over_udp_and_come_whole_over_tcp() -> None:
    z = DnsSdZone(DOMAIN, many(200))
    name = lbl("_ipp", "_tcp")
    udp = ask(z, name, "PTR", 512)
    assert udp.header.tc == 1 and 0 < len(udp.rr) < 200 and not udp.ar
    tcp = ask(z, name, "PTR", 65535)
    assert tcp.header.tc == 0 and len(tcp.rr) == 200
    assert len(rrs(tcp, "ar", QTYPE.SRV)) == 200 and len(rrs(tcp, "ar", QTYPE.A)) == 200
    big = ask(z, name, "PTR", 512, payload=1232)
    assert big.header.tc == 1 and len(udp.rr) < len(big.rr) < 200
    assert rrs(big, "ar", QTYPE.OPT)  # OPT survives truncation


def test_additional_records_go_first_and_only_as_whole_rrsets() -> None:
    z = DnsSdZone(DOMAIN, many(8))
    wire = z.answer(query(lbl("_ipp", "_tcp"), "PTR"), 512)
    assert wire is not None and len(wire) <= 512
    r = DNSRecord.parse(wire)
    assert r.header.tc == 0 and len(r.rr) == 8 and 0 < len(r.ar) < 24
    full = DNSRecord.parse(z.answer(query(lbl("_ipp", "_tcp"), "PTR"), 65535) or b"")
    assert [str(a) for a in r.ar] == [str(a) for a in full.ar[: len(r.ar)]]  # a prefix, in RFC 6763 order


def test_edns0_size_is_honoured_capped_and_echoed() -> None:
    z = DnsSdZone(DOMAIN, many(200), max_udp_payload=4096)
    name = lbl("_ipp", "_tcp")
    sizes = {}
    for payload in (512, 1232, 4096, 65000):
        wire = z.answer(query(name, "PTR", payload=payload), 512)
        assert wire is not None
        sizes[payload] = len(wire)
        opt = rrs(DNSRecord.parse(wire), "ar", QTYPE.OPT)
        assert len(opt) == 1 and opt[0].rclass == 4096 and opt[0].edns_do == 0
    assert sizes[512] <= 512 < sizes[1232] <= 1232 < sizes[4096] <= 4096 and sizes[65000] <= 4096
    assert not rrs(ask(z, name, "PTR"), "ar", QTYPE.OPT)  # no OPT in, none out
    (opt,) = rrs(ask(z, name, "PTR", do=True), "ar", QTYPE.OPT)
    assert opt.edns_do == 1  # RFC 3225: DO copied
    assert DnsSdZone(DOMAIN).max_udp_payload == 1232  # default: DNS flag day size


def test_unknown_edns_version_gets_badvers(zone: DnsSdZone) -> None:
    r = ask(zone, DOMAIN, "SOA", payload=1232, version=1)
    (opt,) = rrs(r, "ar", QTYPE.OPT)
    assert (opt.ttl >> 24) == 1 and r.header.rcode == 0 and not r.rr  # BADVERS = 16 = ext 1, rcode 0


def test_names_match_case_insensitively_and_the_question_keeps_the_clients_case(zone: DnsSdZone) -> None:
    for qid, name in enumerate(
        [lbl("_ipp", "_tcp"), DNSLabel("_IPP._Tcp.CAMPUS.example"), DNSLabel("_iPp._tCP.campus.EXAMPLE")]
    ):
        wire = query(name, "PTR", qid=qid + 100)
        out = zone.answer(wire, 512)
        assert out is not None
        r = DNSRecord.parse(out)
        assert r.header.id == qid + 100 and len(r.rr) == 2
        assert out[12 : 12 + len(wire) - 12] == wire[12:]  # question copied byte for byte
    assert zone.cache_hits == 2
    cafe = DnsSdZone(DOMAIN, [Service("_ipp._tcp", "Café 1.2", "cafe", 631)])
    assert rrs(ask(cafe, lbl("CAFé 1.2", "_IPP", "_TCP"), "SRV"))  # ASCII letters fold…
    assert (
        ask(cafe, lbl("CAFÉ 1.2", "_ipp", "_tcp"), "SRV").header.rcode == RCODE.NXDOMAIN
    )  # …other bytes do not


def test_update_replaces_records_and_clears_the_cache(zone: DnsSdZone) -> None:
    name = lbl("_ipp", "_tcp")
    assert len(ask(zone, name, "PTR").rr) == 2
    serial = zone.serial
    zone.update([WEB])
    assert ask(zone, name, "PTR").header.rcode == RCODE.NXDOMAIN
    assert zone.serial == serial + 1 and zone.services == (WEB,)
    zone.update([*SERVICES, Service("_ipp._tcp", "laser", "laser2", 631)])  # same name, other case: last wins
    (srv,) = rrs(ask(zone, lbl("LASER", "_ipp", "_tcp"), "SRV"))
    assert srv.rdata.target == "laser2.campus.example."


def test_invalid_services_are_skipped_and_counted() -> None:
    bad = [
        Service("ipp", "x", "h", 1),
        Service("_ipp._tcp", "", "h", 1),
        Service("_ipp._tcp", "x", "h", 65536),  # port 0 is valid (_device-info); 65536 is not
        Service("_ipp._tcp", "x" * 64, "h", 1),
        Service("_ipp._tcp", "y", "h.sub", 1),
        Service("_ipp._tcp", "z", "h", 1, (), ("not-an-ip",)),
    ]
    z = DnsSdZone(DOMAIN, [*bad, LASER])
    assert z.rejected == len(bad) and z.services == (LASER,)


def test_bad_domains_are_refused() -> None:
    for domain in (".", "", "a..b", "x" * 64 + ".example", "bad domain.example"):
        with pytest.raises(ValueError):
            DnsSdZone(domain)


# --- odd and hostile queries ------------------------------------------------------------------


def header(qid: int = 7, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)


QNAME = b"\x04_ipp\x04_tcp\x06campus\x07example\x00"


def test_odd_queries_get_the_documented_rcodes(zone: DnsSdZone) -> None:
    def rcode(wire: bytes) -> int | None:
        out = zone.answer(wire, 512)
        if out is None:
            return None
        walk(out)
        return out[3] & 0x0F

    q = QNAME + b"\x00\x0c\x00\x01"
    assert rcode(header() + q) == RCODE.NOERROR
    assert rcode(header(qd=2) + q + q) == RCODE.FORMERR  # one question per query (RFC 9619)
    assert rcode(header(qd=2) + q + b"\xc0\x0c\x00\x0c\x00\x01") == RCODE.FORMERR  # compressed 2nd question
    assert rcode(header(qd=0)) == RCODE.FORMERR
    assert rcode(header(flags=0x2000) + q) == RCODE.NOTIMP  # opcode 4, NOTIFY
    assert rcode(header(flags=0x2800) + q) == RCODE.NOTIMP  # opcode 5, UPDATE
    assert rcode(header(flags=0x8100) + q) is None  # a response: never answered
    assert rcode(header()) is None  # promises a question, has none
    assert rcode(header() + q[:-2]) is None
    assert rcode(b"\x00" * 5) is None
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    assert rcode(header(ar=2) + q + opt + opt) == RCODE.FORMERR  # two OPT records
    a = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x0a\x00\x04\x0a\x00\x00\x01"
    assert rcode(header(ar=1) + q + a) == RCODE.NOERROR  # a stray additional record is ignored
    assert rcode(header(an=1) + q + a) == RCODE.NOERROR
    long_name = b"\x01a" * 127 + b"\x00"  # 255 bytes … plus the domain would exceed it
    assert rcode(header() + long_name + b"\x00\x01\x00\x01") == RCODE.REFUSED
    assert rcode(header() + b"\x01a" * 130 + QNAME + b"\x00\x01\x00\x01") in (None, RCODE.FORMERR)
    assert (
        rcode(header() + b"\x40" + b"x" * 64 + QNAME + b"\x00\x01\x00\x01") == RCODE.FORMERR
    )  # label type 01
    assert rcode(header() + b"\x01\xff" + QNAME + b"\x00\x01\x00\x01") == RCODE.NXDOMAIN  # non-UTF-8 label


def walk(wire: bytes) -> None:
    """Strict structural check of a DNS message (dnslib refuses non-UTF-8 labels, which DNS allows)."""
    qd, an, ns, ar = struct.unpack("!4H", wire[4:12])
    i = 12

    def name(i: int) -> int:
        seen = 0
        while True:
            length = wire[i]
            if length >= 0xC0:
                assert (((length & 0x3F) << 8) | wire[i + 1]) < i
                return i + 2
            assert length <= 63
            seen += length + 1
            assert seen < 256
            i += 1 + length
            if length == 0:
                return i

    for _ in range(qd):
        i = name(i) + 4
    for _ in range(an + ns + ar):
        i = name(i) + 10
        i += struct.unpack("!H", wire[i - 2 : i])[0]
    assert i == len(wire)


def mutations(rng: random.Random, seeds: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(3000):
        w = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            if op == 0 and w:
                w[rng.randrange(len(w))] = rng.randrange(256)
            elif op == 1:
                w = w[: rng.randrange(len(w) + 1)]
            elif op == 2:
                w.insert(rng.randrange(len(w) + 1), rng.randrange(256))
            elif len(w) > 12:
                w[12 + rng.randrange(len(w) - 12)] = rng.choice([0xC0, 0x3F, 0x40, 0x00])
        out.append(bytes(w))
    return out


def test_hostile_input_never_raises_and_yields_parseable_answers(
    zone: DnsSdZone, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(8766)
    zone.update(many(40) + SERVICES)
    seeds = [
        query(lbl("_ipp", "_tcp"), "PTR"),
        query(lbl("_ipp", "_tcp"), "PTR", payload=4096, do=True),
        query(lbl(DOTTED, "_ipp", "_tcp"), "ANY"),
        query(lbl("printer"), "AAAA", payload=1232),
    ]
    crafted = [
        header() + b"\xc0\x0c\x00\x01\x00\x01",  # pointer to itself
        header() + b"\x01a\xc0\x0e\x00\x01\x00\x01",  # pointer into its own label
        header() + b"\x01a\xc0\x0c\x00\x01\x00\x01",  # pointer back to the name's start: a loop
        header(qd=2) + QNAME + b"\x00\x01\x00\x01" + b"\xc0\x1e\x00\x01\x00\x01",
        header() + b"\x01a" * 200 + b"\x00\x00\x01\x00\x01",  # far too many labels
        header(qd=0xFFFF, an=0xFFFF, ns=0xFFFF, ar=0xFFFF) + QNAME,
        header() + b"\x3f" + b"x" * 63 + b"\x00\x00\x01\x00\x01",
        header(ar=1) + QNAME + b"\x00\x01\x00\x01" + b"\x00\x00\x29\xff\xff\x00\x00\x00\x00\xff\xff",
    ]
    randoms = [rng.randbytes(rng.randrange(64)) for _ in range(1500)]
    randoms += [
        header(qid=rng.randrange(65536), flags=rng.randrange(65536)) + rng.randbytes(40) for _ in range(1000)
    ]
    answered = 0
    for wire in crafted + mutations(rng, seeds) + randoms:
        for size in (512, 65535):
            out = zone.answer(wire, size)
            if out is None:
                continue
            answered += 1
            assert out[:2] == wire[:2] and out[2] & 0x80 and len(out) <= max(size, 4096)
            walk(out)
            try:
                DNSRecord.parse(out)
            except Exception as exc:  # only because dnslib insists that labels be UTF-8
                assert "Invalid label" in str(exc)
    assert answered > 1000
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # answer() caught nothing unexpected


# --- the asyncio server and real clients ------------------------------------------------------

needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig (Debian dnsutils)")


@pytest.fixture
async def server() -> AsyncIterator[DnsSdServer]:
    zone = DnsSdZone(DOMAIN, [*SERVICES, *many(200, "_many._tcp")])
    srv = DnsSdServer(zone, "127.0.0.1", 0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def dig(port: int, *args: str, host: str = "127.0.0.1") -> str:
    proc = await asyncio.create_subprocess_exec(
        "dig", f"@{host}", "-p", str(port), "+tries=1", "+time=2", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode("utf-8", "replace")


@needs_dig
async def test_dig_walks_ptr_srv_txt_a(server: DnsSdServer) -> None:
    ptrs = (await dig(server.port, "PTR", "_ipp._tcp.campus.example", "+short")).split()
    assert sorted(ptrs) == [
        "Floor\\0322\\.\\032Printer\\032\\195\\156._ipp._tcp.campus.example.",
        "Laser._ipp._tcp.campus.example.",
    ]
    srv = (await dig(server.port, "SRV", ptrs[0], "+short")).split()
    assert srv[:3] == ["0", "0", "631"] and srv[3] in ("printer.campus.example.", "laser.campus.example.")
    txt = await dig(
        server.port, "TXT", "Floor\\0322\\.\\032Printer\\032\\195\\156._ipp._tcp.campus.example", "+short"
    )
    assert txt.strip() == '"txtvers=1" "rp=ipp/print" "flag"'
    assert (await dig(server.port, "A", srv[3], "+short")).strip() in ("10.1.2.3", "10.1.2.4")
    assert (await dig(server.port, "AAAA", "printer.campus.example", "+short")).strip() == "2001:db8::5"
    nx = await dig(server.port, "SRV", "gone._ipp._tcp.campus.example")
    assert "status: NXDOMAIN" in nx and "flags: qr aa" in nx and "SOA" in nx
    assert "status: REFUSED" in await dig(server.port, "A", "example.org")
    assert "campus.example." in await dig(server.port, "PTR", "lb._dns-sd._udp.campus.example", "+short")


@needs_dig
async def test_dig_over_tcp_and_truncation_retry(server: DnsSdServer) -> None:
    tcp = await dig(server.port, "+tcp", "SRV", "web._http._tcp.campus.example", "+short")
    assert tcp.strip() == "0 0 80 box.campus.example."
    retried = await dig(server.port, "+noedns", "PTR", "_many._tcp.campus.example")
    assert "Truncated, retrying in TCP mode" in retried and "ANSWER: 200," in retried
    ignored = await dig(server.port, "+noedns", "+ignore", "PTR", "_many._tcp.campus.example")
    assert "flags: qr aa tc" in ignored and "ANSWER: 200," not in ignored


async def tcp_exchange(port: int, wires: list[bytes], replies: int) -> list[DNSRecord]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(len(w).to_bytes(2, "big") + w for w in wires))  # pipelined in one segment
        out = []
        for _ in range(replies):
            size = int.from_bytes(await reader.readexactly(2), "big")
            out.append(DNSRecord.parse(await reader.readexactly(size)))
        return out
    finally:
        writer.close()
        await writer.wait_closed()


async def test_tcp_pipelines_queries_and_enforces_caps() -> None:
    zone = DnsSdZone(DOMAIN, SERVICES)
    srv = DnsSdServer(zone, "127.0.0.1", 0, idle_timeout=0.3, max_tcp_connections=1)
    await srv.start()
    try:
        wires = [query(lbl("_ipp", "_tcp"), "PTR", qid=1), b"\x00" * 3, query(lbl("box"), "A", qid=2)]
        answers = await tcp_exchange(srv.port, wires, 2)  # the garbage in the middle is skipped
        assert [a.header.id for a in answers] == [1, 2] and len(answers[0].rr) == 2
        for _ in range(100):  # let the server see the first connection go
            if not srv._connections:
                break
            await asyncio.sleep(0.01)
        first = await asyncio.open_connection("127.0.0.1", srv.port)
        await asyncio.sleep(0.05)
        second = await asyncio.open_connection("127.0.0.1", srv.port)
        assert await asyncio.wait_for(second[0].read(), 2) == b""  # over the cap: closed at once
        second[1].close()
        assert await asyncio.wait_for(first[0].read(), 2) == b""  # idle: closed after 0.3 s
        first[1].close()
    finally:
        await srv.close()


async def test_udp_answers_and_close_releases_the_port() -> None:
    zone = DnsSdZone(DOMAIN, SERVICES)
    srv = DnsSdServer(zone, "127.0.0.1", 0)
    await srv.start()
    port = srv.port
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        await loop.sock_connect(s, ("127.0.0.1", port))
        await loop.sock_sendall(s, query(lbl("laser"), "A", qid=99))
        reply = DNSRecord.parse(await asyncio.wait_for(loop.sock_recv(s, 4096), 2))
    assert reply.header.id == 99 and str(reply.rr[0].rdata) == "10.1.2.4"
    await srv.close()
    again = DnsSdServer(zone, "127.0.0.1", port)
    await again.start()  # both sockets were released
    assert again.port == port
    await again.close()
    with pytest.raises(RuntimeError):
        _ = DnsSdServer(zone, "127.0.0.1", 0).port


def have_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@needs_dig
@pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_loopback() -> None:
    host, port = parse_listen("[::1]:0")
    srv = DnsSdServer(DnsSdZone(DOMAIN, SERVICES), host, port)
    await srv.start()
    try:
        assert (await dig(srv.port, "A", "box.campus.example", "+short", host="::1")).strip() == "10.0.0.1"
        assert (
            await dig(srv.port, "+tcp", "A", "box.campus.example", "+short", host="::1")
        ).strip() == "10.0.0.1"
    finally:
        await srv.close()


# --- listen addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        (" 0.0.0.0:53 ", ("0.0.0.0", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[fe80::1%eth0]:53", ("fe80::1%eth0", 53)),
        ("localhost:0", ("localhost", 0)),
        ("gw.campus.example:53", ("gw.campus.example", 53)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("127.0.0.1", "missing ':PORT'"),
        ("::1:53", "brackets"),
        ("[::1", "missing ']'"),
        ("[::1]53", "expected ':PORT'"),
        ("[10.0.0.1]:53", "not an IPv6"),
        ("127.0.0.1:65536", "0 to 65535"),
        ("127.0.0.1:-1", "0 to 65535"),
        ("127.0.0.1:http", "0 to 65535"),
        (":53", "missing address"),
        ("bad_host:53", "neither"),
        ("999.1.1.1:53", "neither"),
    ],
)
def test_parse_listen_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_listen(text)
    assert parse_listen("127.0.0.1", default_port=53) == ("127.0.0.1", 53)


def test_answer_cache_is_bounded_and_can_be_turned_off() -> None:
    small = DnsSdZone(DOMAIN, SERVICES, cache_size=3)
    for i in range(10):
        ask(small, lbl(f"nope{i}"), "A")
    assert len(small._cache) == 3
    off = DnsSdZone(DOMAIN, SERVICES, cache_size=0)
    for _ in range(3):
        assert len(ask(off, lbl("_ipp", "_tcp"), "PTR").rr) == 2
    assert off.cache_hits == 0 and not off._cache
