"""What real devices publish crosses unchanged: the corpus in tests/data/device_records.json.

Each record shape (sources cited in the file) goes through what z2z does with it
and must come out with name, subtypes, port, TXT (byte-exact, order kept) and
addresses unchanged:

* the DHT value (envelope, DNS message) and back;
* the unicast DNS-SD front end (answers read with dnslib);
* the python-zeroconf backend's packets: the proxy's `ServiceInfo` as
  python-zeroconf writes it, mended by `MendedZeroconf`, read with dnslib,
  and its subtype PTRs.

The interop matrix on the testbed (every publisher x every client, both link
backends) is tests/e2e/test_interop_matrix_e2e.py; this is the part that needs
no sockets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from zeroconf import const
from zeroconf._protocol.outgoing import DNSOutgoing

from z2z.adapters.dns import DnsSdZone
from z2z.adapters.link.labels import join_split_names
from z2z.adapters.link.zeroconf import ZeroconfLink
from z2z.core.records import Service, subtype_set, validate
from z2z.core.wire.envelope import Envelope, decode, encode

CORPUS = json.loads((Path(__file__).resolve().parents[1] / "data" / "device_records.json").read_text())
DOMAIN = "campus.example."
# Real shapes z2z cannot carry yet, with the reason (a test that starts passing must be looked at).
# Port 0 (Apple's _device-info, the flagship _printer) was one; it is carried since.
KNOWN_GAPS: dict[str, str] = {}


def _txt(entry: str) -> bytes:
    return bytes.fromhex(entry[4:]) if entry.startswith("hex:") else entry.encode("utf-8")


def _service(rec: dict[str, Any]) -> Service:
    return Service(
        rec["type"],
        rec["instance"],
        rec["host"],
        rec["port"],
        tuple(_txt(t) for t in rec["txt"]),
        tuple(rec["addresses"]),
        subtype_set(rec.get("subtypes", [])),
        rec.get("priority", 0),
        rec.get("weight", 0),
    )


def _cases() -> list[Any]:
    out = []
    for rec in CORPUS["services"]:
        marks = (
            [pytest.mark.xfail(reason=KNOWN_GAPS[rec["type"]], strict=True)]
            if rec["type"] in KNOWN_GAPS
            else []
        )
        out.append(pytest.param(rec, id=f"{rec['type']}:{rec['instance']}", marks=marks))
    return out


def test_the_corpus_covers_what_the_issue_lists() -> None:
    assert any(rec["port"] == 0 for rec in CORPUS["services"])
    assert any(rec.get("priority") or rec.get("weight") for rec in CORPUS["services"])
    assert CORPUS["not_carried"] == []
    types = {rec["type"] for rec in CORPUS["services"]}
    assert {"_ipp._tcp", "_ipps._tcp", "_airplay._tcp", "_raop._tcp", "_googlecast._tcp",
            "_spotify-connect._tcp", "_sonos._tcp", "_hap._tcp", "_adisk._tcp", "_smb._tcp", "_daap._tcp",
            "_uscan._tcp", "_device-info._tcp"} <= types  # fmt: skip
    assert all(rec["source"] for rec in CORPUS["services"])


@pytest.mark.parametrize("rec", _cases())
def test_record_crosses_the_dht_value_unchanged(rec: dict[str, Any]) -> None:
    service = validate(_service(rec))
    env = Envelope("z2z", "campus-a", "0123456789abcdef", 1, 1800000000.0, 120, False, service)
    assert decode(encode(env)).service == service


@pytest.mark.parametrize("rec", _cases())
def test_record_is_answered_unchanged_by_the_unicast_front_end(rec: dict[str, Any]) -> None:
    service = validate(_service(rec))
    zone = DnsSdZone(DOMAIN, [service])
    dom = [b"campus", b"example"]
    type_labels = [t.encode() for t in service.type.split(".")]
    instance = DNSLabel([service.instance.encode(), *type_labels, *dom])

    def ask(name: DNSLabel, qtype: str) -> DNSRecord:
        q = DNSRecord(DNSHeader(id=1, rd=1), q=DNSQuestion(name, getattr(QTYPE, qtype)))
        wire = zone.answer(bytes(q.pack()), 65535)
        assert wire is not None
        return DNSRecord.parse(wire)

    ptr = ask(DNSLabel([*type_labels, *dom]), "PTR")
    assert [rr.rdata.label.label for rr in ptr.rr] == [instance.label]
    (srv,) = ask(instance, "SRV").rr
    assert (srv.rdata.port, srv.rdata.priority, srv.rdata.weight) == (
        service.port,
        service.priority,
        service.weight,
    )
    (txt,) = ask(instance, "TXT").rr
    assert [bytes(s) for s in txt.rdata.data] == (list(service.txt) or [b""])
    for sub in service.subtypes:
        answer = ask(DNSLabel([sub.encode(), b"_sub", *type_labels, *dom]), "PTR")
        assert [rr.rdata.label.label for rr in answer.rr] == [instance.label]


@pytest.mark.parametrize("rec", _cases())
def test_record_leaves_python_zeroconf_unchanged(rec: dict[str, Any]) -> None:
    service = validate(_service(rec))
    fq_type = f"{service.type}.local."
    info = ZeroconfLink()._make_info(service, f"{service.instance}.{fq_type}")
    out = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
    out.add_answer_at_time(info.dns_pointer(), 0)
    out.add_answer_at_time(info.dns_service(), 0)
    out.add_answer_at_time(info.dns_text(), 0)
    for record in info.dns_addresses():
        out.add_additional_answer(record)
    (packet,) = out.packets()
    msg = DNSRecord.parse(join_split_names(packet))
    whole = (service.instance.encode(), *(t.encode() for t in service.type.split(".")), b"local")
    ptr, srv, txt = msg.rr
    assert ptr.rdata.label.label == whole and srv.rname.label == whole
    assert (srv.rdata.port, srv.rdata.target.label) == (service.port, (service.host.encode(), b"local"))
    assert (srv.rdata.priority, srv.rdata.weight) == (service.priority, service.weight)
    assert [bytes(s) for s in txt.rdata.data] == (list(service.txt) or [b""])
    assert sorted(str(rr.rdata) for rr in msg.ar) == sorted(service.addresses)


def test_the_interop_matrix_not_applicable_table_names_real_cells() -> None:
    """The e2e matrix's (publisher, record) -> reason table (tests/support/interop_corpus.py)."""
    from support import interop_corpus as ic

    assert [rec["instance"] for rec in ic.CORPUS] == [rec["instance"] for rec in CORPUS["services"]]
    for (publisher, record), aspects in ic.NOT_APPLICABLE.items():
        assert publisher in ic.PUBLISHERS and record in ic.RECORDS
        assert set(aspects) <= {"name", "port0", "txt", "srv", "subtypes", "host"} and all(aspects.values())
    for rec in ic.CORPUS:
        for publisher in ic.PUBLISHERS:
            na = ic.NOT_APPLICABLE.get((publisher, ic.key(rec)), {})
            assert ("name" in na) == ("." in rec["instance"] and publisher != "avahi"), (publisher, rec)
    for publisher in ic.PUBLISHERS:
        for spec in ic.spec(publisher):
            assert len(spec["name"].encode()) <= 63
            assert len(f"{spec['host']}-{ic.SITE_A}-z2z".encode()) <= 63
