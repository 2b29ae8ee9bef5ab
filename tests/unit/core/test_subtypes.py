"""Subtypes (RFC 6763 §7.1): the model, the DNS codec, the versioned envelope, the config and the zone."""

from __future__ import annotations

import base64
import json

import pytest
from dnslib import QTYPE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from z2z.adapters.dns import DnsSdZone
from z2z.app.config import DEFAULT_SUBTYPES, ConfigError, check_settings
from z2z.core.records import (
    MAX_SUBTYPES,
    RecordError,
    Service,
    decode_service,
    encode_service,
    parse_subtype,
    service_to_rrs,
    subtype_set,
    validate,
)
from z2z.core.wire.envelope import Envelope, ProtocolError, decode, encode

PRINTER = Service(
    "_ipp._tcp",
    "Room 2.14 Printer",
    "printer",
    631,
    (b"rp=ipp/print",),
    ("10.77.1.10",),
    ("_print", "_universal"),
)
# A value written by z2z before subtypes existed (main at bcab39b): it must still be read.
OLD_VALUE = (
    b'{"z2z":1,"net":"z2z","site":"campus-a","node":"0123456789abcdef","seq":7,"ts":1800000000.0,"ttl":120,'
    b'"gone":false,"type":"_ipp._tcp","dns":"KOGFAAAAAAQAAAAABF9pcHAEX3RjcAVsb2NhbAAADAABAAAAeAAUEVJvb20gMi4x'
    b"NCBQcmludGVywAzAJwAhAAEAAAB4ABUAAAAAAncHcHJpbnRlcgVsb2NhbADAJwAQAAEAAAB4AA0McnA9aXBwL3ByaW50B3ByaW50ZXLA"
    b'FgABAAEAAAB4AAQKTQEK"}'
)


def _env(service: Service) -> Envelope:
    return Envelope("z2z", "campus-a", "0123456789abcdef", 7, 1800000000.0, 120, False, service)


def test_subtype_sets_are_canonical_and_checked() -> None:
    assert subtype_set(["_universal", "_print", "_Universal"]) == ("_print", "_universal")
    assert parse_subtype("_universal._sub._ipp._tcp.local.") == ("_universal", "_ipp._tcp")
    for bad in ("_universal._ipp._tcp", "._sub._ipp._tcp", "_a._sub._ipp", "x" * 64 + "._sub._ipp._tcp"):
        with pytest.raises(RecordError):
            parse_subtype(bad)
    with pytest.raises(RecordError, match="canonical"):
        validate(Service("_ipp._tcp", "P", "h", 1, subtypes=("_universal", "_print")))
    with pytest.raises(RecordError, match="more than"):
        validate(
            Service("_ipp._tcp", "P", "h", 1, subtypes=tuple(f"_s{i:02d}" for i in range(MAX_SUBTYPES + 1)))
        )
    with pytest.raises(RecordError, match="bad subtype"):
        validate(Service("_ipp._tcp", "P", "h", 1, subtypes=("a.b",)))


def test_subtype_ptrs_in_the_dns_message_round_trip() -> None:
    rrs = service_to_rrs(PRINTER)
    ptrs = [(rr.rname.label, rr.rdata.label.label) for rr in rrs if rr.rtype == QTYPE.PTR]
    instance = (b"Room 2.14 Printer", b"_ipp", b"_tcp", b"local")
    assert ptrs == [
        ((b"_ipp", b"_tcp", b"local"), instance),
        ((b"_print", b"_sub", b"_ipp", b"_tcp", b"local"), instance),
        ((b"_universal", b"_sub", b"_ipp", b"_tcp", b"local"), instance),
    ]
    assert decode_service(encode_service(PRINTER), "_ipp._tcp") == PRINTER


def test_a_subtype_ptr_to_another_instance_is_refused() -> None:
    msg = DNSRecord.parse(encode_service(PRINTER))
    msg.rr[1].rdata.label = DNSLabel([b"Other", b"_ipp", b"_tcp", b"local"])
    with pytest.raises(RecordError, match="subtype PTR"):
        decode_service(bytes(msg.pack()), "_ipp._tcp")


def test_envelope_version_2_only_with_subtypes_and_old_values_still_read() -> None:
    plain = Service("_ipp._tcp", "Room 2.14 Printer", "printer", 631, (b"rp=ipp/print",), ("10.77.1.10",))
    assert decode(OLD_VALUE).service == plain
    assert json.loads(encode(_env(plain)))["z2z"] == 1  # services without subtypes: still version 1
    assert decode(encode(_env(plain))).service == plain
    wire = encode(_env(PRINTER))
    assert json.loads(wire)["z2z"] == 2
    assert decode(wire).service.subtypes == ("_print", "_universal")
    # One encoding per value: version 1 with subtype PTRs, or 2 without, is refused.
    doc = json.loads(wire)
    with pytest.raises(ProtocolError, match="bad-version"):
        decode(json.dumps({**doc, "z2z": 1}).encode())
    with pytest.raises(ProtocolError, match="bad-version"):
        decode(json.dumps({**json.loads(OLD_VALUE), "z2z": 2}).encode())
    with pytest.raises(ProtocolError, match="bad-version"):
        decode(json.dumps({**doc, "z2z": 3}).encode())
    assert decode_service(base64.b64decode(doc["dns"]), "_ipp._tcp") == PRINTER


def test_config_subtypes() -> None:
    assert (
        "_universal._sub._ipp._tcp" in DEFAULT_SUBTYPES and "_universal._sub._ipps._tcp" in DEFAULT_SUBTYPES
    )
    assert check_settings({"subtypes": ["_Universal._sub._IPP._tcp.local.", "_cups._sub._ipp._tcp"]}) == {
        "subtypes": ("_Universal._sub._ipp._tcp", "_cups._sub._ipp._tcp")
    }
    assert check_settings({"subtypes": []}) == {"subtypes": ()}
    with pytest.raises(ConfigError, match="subtypes: not a DNS-SD subtype"):
        check_settings({"subtypes": ["_universal._ipp._tcp"]})


def test_the_unicast_zone_answers_subtype_ptrs() -> None:
    zone = DnsSdZone(
        "campus.example.", [PRINTER, Service("_ipp._tcp", "Plain", "p2", 631, (), ("10.0.0.2",))]
    )
    dom = [b"campus", b"example"]

    def ask(labels: list[bytes], qtype: str) -> DNSRecord:
        q = DNSRecord(DNSHeader(id=1, rd=1), q=DNSQuestion(DNSLabel(labels + dom), getattr(QTYPE, qtype)))
        wire = zone.answer(bytes(q.pack()), 512)
        assert wire is not None
        return DNSRecord.parse(wire)

    answer = ask([b"_universal", b"_sub", b"_ipp", b"_tcp"], "PTR")
    assert [rr.rdata.label.label for rr in answer.rr] == [(b"Room 2.14 Printer", b"_ipp", b"_tcp", *dom)]
    assert {rr.rtype for rr in answer.ar} >= {QTYPE.SRV, QTYPE.TXT, QTYPE.A}
    assert len(ask([b"_ipp", b"_tcp"], "PTR").rr) == 2
    assert not ask([b"_cups", b"_sub", b"_ipp", b"_tcp"], "PTR").rr
    types = ask([b"_services", b"_dns-sd", b"_udp"], "PTR")
    assert [rr.rdata.label.label for rr in types.rr] == [(b"_ipp", b"_tcp", *dom)]
