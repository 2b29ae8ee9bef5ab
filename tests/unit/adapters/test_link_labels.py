"""Instance names leave python-zeroconf in one DNS label: packets built by python-zeroconf, read by dnslib."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, DNSLabel, DNSRecord
from zeroconf import DNSNsec, DNSOutgoing, DNSQuestion, ServiceInfo, const

from z2z.adapters.link.base import LinkError
from z2z.adapters.link.labels import has_split_name, join_split_names, joined_labels
from z2z.adapters.link.zeroconf import ZeroconfLink
from z2z.adapters.link.zeroconf_ext import _names_of
from z2z.core.records import Service

T = "_ipp._tcp.local."
NAMES = [
    "Room 2.14 Printer",
    "Dr. Smith's MacBook (2) @ home",
    "a\\b.c\\.d",
    "Ünïcødé. 漢字 🖨",
    "x" * 30 + "." + "y" * 32,  # 63 bytes, one dot
]


def _info(instance: str) -> ServiceInfo:
    return ServiceInfo(
        T,
        f"{instance}.{T}",
        port=631,
        properties=b"\x05a=b.c\x00",
        server="host-campus-a.local.",
        addresses=[bytes([10, 0, 0, 1]), bytes(15) + b"\x01"],
        host_ttl=120,
        other_ttl=120,
    )


def _announcement(info: ServiceInfo) -> DNSOutgoing:
    """What python-zeroconf sends when it announces or answers a PTR question."""
    out = DNSOutgoing(const._FLAGS_QR_RESPONSE | const._FLAGS_AA)
    out.add_answer_at_time(info.dns_pointer(), 0)
    out.add_answer_at_time(info.dns_service(), 0)
    out.add_answer_at_time(info.dns_text(), 0)
    for record in info.dns_addresses():
        out.add_additional_answer(record)
    out.add_additional_answer(
        DNSNsec(info.name, const._TYPE_NSEC, const._CLASS_IN | const._CLASS_UNIQUE, 120, info.name, [16, 33])
    )
    return out


def _probe(info: ServiceInfo) -> DNSOutgoing:
    out = DNSOutgoing(const._FLAGS_QR_QUERY)
    out.add_question(DNSQuestion(info.name, const._TYPE_ANY, const._CLASS_IN | const._CLASS_UNIQUE))
    out.add_authorative_answer(info.dns_pointer())
    return out


@pytest.mark.parametrize("instance", NAMES)
def test_python_zeroconf_splits_and_the_mend_joins(instance: str) -> None:
    info = _info(instance)
    (raw,) = _announcement(info).packets()
    before = DNSRecord.parse(raw)
    # The bug being worked around: python-zeroconf writes the name split at its dots.
    assert before.rr[1].rname.label[0] != instance.encode()
    assert has_split_name(_names_of(_announcement(info)))

    after = DNSRecord.parse(join_split_names(raw))
    whole = (instance.encode(), b"_ipp", b"_tcp", b"local")
    ptr, srv, txt = after.rr
    assert ptr.rname.label == (b"_ipp", b"_tcp", b"local") and ptr.rdata.label.label == whole
    assert srv.rname.label == whole and txt.rname.label == whole
    assert (srv.rdata.port, srv.rdata.target.label) == (631, (b"host-campus-a", b"local"))
    assert [bytes(s) for s in txt.rdata.data] == [b"a=b.c", b""]
    nsec = [rr for rr in after.ar if rr.rtype == QTYPE.NSEC]
    assert nsec[0].rname.label == whole and nsec[0].rdata.label.label == whole
    # Everything else is what python-zeroconf wrote: classes (cache-flush bit), TTLs, addresses.
    for old, new in zip(before.rr + before.ar, after.rr + after.ar, strict=True):
        assert (old.rtype, old.rclass, old.ttl) == (new.rtype, new.rclass, new.ttl)
    assert sorted(str(rr.rdata) for rr in after.ar if rr.rtype in (QTYPE.A, QTYPE.AAAA)) == [
        "10.0.0.1",
        "::1",
    ]

    (probe,) = _probe(info).packets()
    mended = DNSRecord.parse(join_split_names(probe))
    assert mended.q.qname.label == whole and mended.q.qclass == 0x8001
    assert mended.auth[0].rdata.label.label == whole


def test_packets_without_split_names_are_untouched() -> None:
    info = _info("Plain Printer")
    out = _announcement(info)
    assert not has_split_name(_names_of(out))
    (raw,) = out.packets()
    assert join_split_names(raw) is raw


def test_what_counts_as_a_split_instance() -> None:
    assert joined_labels([b"a", b"b", b"_ipp", b"_tcp", b"local"]) == (b"a.b", b"_ipp", b"_tcp", b"local")
    assert joined_labels([b"a", b"b", b"c", b"_ipp", b"_udp", b"LOCAL"]) == (
        b"a.b.c",
        b"_ipp",
        b"_udp",
        b"LOCAL",
    )
    # subtype names, type enumeration, types, whole instances, other domains stay
    assert joined_labels([b"_universal", b"_sub", b"_ipp", b"_tcp", b"local"]) is None
    assert joined_labels([b"_services", b"_dns-sd", b"_udp", b"local"]) is None
    assert joined_labels([b"a.b", b"_ipp", b"_tcp", b"local"]) is None
    assert joined_labels([b"a", b"b", b"_ipp", b"_tcp", b"example"]) is None
    assert joined_labels([b"a", b"b", b"ipp", b"_tcp", b"local"]) is None
    assert not has_split_name(["_universal._sub._ipp._tcp.local.", "host.local.", "_ipp._tcp.local."])


def test_garbage_is_sent_as_it_is() -> None:
    assert join_split_names(b"\x00\x01") == b"\x00\x01"
    wire = DNSRecord.question(str(DNSLabel([b"a", b"b", b"_ipp", b"_tcp", b"local"])), "SRV").pack()
    assert DNSRecord.parse(join_split_names(wire)).q.qname.label == (b"a.b", b"_ipp", b"_tcp", b"local")


@pytest.mark.parametrize("instance", ["Living Room 2.", ".hidden", "St. Mary's... Hall"])
def test_empty_labels_are_refused_with_python_zeroconf(instance: str) -> None:
    """python-zeroconf would write an empty label, ending the name mid-packet: refused, not sent broken."""
    link = ZeroconfLink()
    service = Service("_ipp._tcp", instance, "h", 631, (), ("10.0.0.1",))
    with pytest.raises(LinkError, match="leading, trailing or doubled dot"):
        link._make_info(service, f"{instance}._ipp._tcp.local.")
