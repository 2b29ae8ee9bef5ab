"""SRV priority/weight and port 0: carried through the model, the DHT value and the link backends."""

from __future__ import annotations

import base64
import json

import pytest
from dnslib import QTYPE, SRV, DNSLabel, DNSRecord

from z2z.adapters.link.avahi import parse_srv
from z2z.adapters.link.avahi.names import parse_srv_fields
from z2z.adapters.link.zeroconf import ZeroconfLink, service_from_info
from z2z.core.records import RecordError, Service, decode_service, encode_service, service_to_rrs, validate
from z2z.core.wire.envelope import Envelope, decode, encode

WEB = Service("_http._tcp", "Backup Web 2.0", "web2", 8443, (b"path=/",), ("192.0.2.95",), (), 10, 60)
DEVICE_INFO = Service(
    "_device-info._tcp", "Dr. Smith's MacBook", "mbp", 0, (b"model=Mac14,7",), ("192.0.2.80",)
)


def _env(service: Service) -> Envelope:
    return Envelope("z2z", "campus-a", "0123456789abcdef", 1, 1800000000.0, 120, False, service)


def test_priority_and_weight_cross_the_dht_value() -> None:
    assert decode_service(encode_service(WEB), "_http._tcp") == WEB
    assert decode(encode(_env(WEB))).service == WEB
    msg = DNSRecord.parse(base64.b64decode(json.loads(encode(_env(WEB)))["dns"]))
    [srv] = [rr.rdata for rr in msg.rr if rr.rtype == QTYPE.SRV]
    assert (srv.priority, srv.weight, srv.port) == (10, 60, 8443)
    # No new format version: readers that ignore the SRV's priority/weight read the value as before.
    assert json.loads(encode(_env(WEB)))["z2z"] == 1


def test_an_old_value_reads_as_priority_and_weight_zero() -> None:
    """A value written before priority/weight were carried (SRV 0 0) reads as 0/0."""
    old = Service("_http._tcp", "Old Web", "web", 80, (b"path=/",), ("192.0.2.1",))
    msg = DNSRecord()
    msg.header.qr = msg.header.aa = 1
    for rr in service_to_rrs(old):
        if rr.rtype == QTYPE.SRV:
            rr.rdata = SRV(0, 0, 80, DNSLabel([b"web", b"local"]))  # what every older writer wrote
        msg.add_answer(rr)
    got = decode_service(bytes(msg.pack()), "_http._tcp")
    assert (got.priority, got.weight) == (0, 0) and got == old


def test_port_zero_is_carried_and_out_of_range_fields_refused() -> None:
    assert validate(DEVICE_INFO) is DEVICE_INFO
    assert decode(encode(_env(DEVICE_INFO))).service == DEVICE_INFO
    for bad in (
        Service("_http._tcp", "x", "h", 65536),
        Service("_http._tcp", "x", "h", -1),
        Service("_http._tcp", "x", "h", 80, priority=65536),
        Service("_http._tcp", "x", "h", 80, weight=-1),
    ):
        with pytest.raises(RecordError):
            validate(bad)


@pytest.mark.parametrize("service", [WEB, DEVICE_INFO], ids=["priority-weight", "port-0"])
def test_python_zeroconf_backend_publishes_and_reads_the_fields(service: Service) -> None:
    info = ZeroconfLink()._make_info(service, f"{service.instance}.{service.type}.local.")
    srv = info.dns_service()
    assert (srv.priority, srv.weight, srv.port) == (service.priority, service.weight, service.port)
    assert service_from_info(service.type, info) == service


def test_avahi_srv_rdata_fields() -> None:
    rdata = b"\x00\x0a\x00\x3c\x20\xfb\x04web2\x05local\x00"
    assert parse_srv_fields(rdata) == (10, 60, 8443, [b"web2", b"local"])
    assert parse_srv(rdata) == (8443, [b"web2", b"local"])
    assert parse_srv_fields(b"\x00\x00\x00\x00\x00\x00\x03mbp\x05local\x00")[2] == 0
