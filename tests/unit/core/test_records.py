"""Unit tests of the service model and its dnslib codec."""

import pytest

from z2z.core.records import (
    RecordError,
    Service,
    decode_service,
    encode_service,
    host_label,
    normalize_type,
    routable_addresses,
    validate,
)

PRINTER = Service(
    type="_ipp._tcp",
    instance="Floor 2. Printer \\ Ünïcode",
    host="printer",
    port=631,
    txt=(b"txtvers=1", b"rp=ipp/print", b"flag", b"pdl=application/pdf"),
    addresses=("10.1.2.3", "2001:db8::5"),
)


def test_round_trip_keeps_every_field_and_txt_order() -> None:
    assert decode_service(encode_service(PRINTER), "_ipp._tcp") == PRINTER


def test_empty_txt_round_trips_as_empty() -> None:
    svc = Service("_http._tcp", "web", "box", 80, (), ("10.0.0.1",))
    assert decode_service(encode_service(svc), "_http._tcp").txt == ()


@pytest.mark.parametrize(
    "raw", [b"", b"\x00" * 12, b"\xff" * 40, encode_service(PRINTER)[:-3], b"garbage" * 10]
)
def test_garbage_is_a_record_error(raw: bytes) -> None:
    with pytest.raises(RecordError):
        decode_service(raw, "_ipp._tcp")


@pytest.mark.parametrize(
    ("instance", "why"),
    [
        ("", "empty"),
        ("Evil\x00Printer", "control character"),
        ("Line\nbreak", "control character"),
        ("Bell\x07", "control character"),
        ("Del\x7f", "control character"),
        ("caf\ufffd", "not valid UTF-8"),
        ("x" * 64, "longer than 63"),
        ("é" * 32, "longer than 63"),  # 64 bytes of UTF-8
    ],
)
def test_hostile_instance_names_are_refused(instance: str, why: str) -> None:
    with pytest.raises(RecordError, match=why):
        validate(Service("_ipp._tcp", instance, "h", 631, (), ("10.0.0.1",)))


@pytest.mark.parametrize("instance", ["x" * 63, "é" * 31 + "x", "a.b.c", "back\\slash\\", "日本語 プリンタ"])
def test_legal_odd_names_round_trip(instance: str) -> None:
    svc = Service("_ipp._tcp", instance, "h", 631, (), ("10.0.0.1",))
    assert decode_service(encode_service(svc), "_ipp._tcp") == svc


def test_wrong_type_is_refused() -> None:
    with pytest.raises(RecordError):
        decode_service(encode_service(PRINTER), "_http._tcp")


@pytest.mark.parametrize(
    ("given", "expected"),
    [("_ipp._tcp", "_ipp._tcp"), ("_IPP._tcp.local.", "_ipp._tcp"), ("_daap._tcp.", "_daap._tcp")],
)
def test_normalize_type(given: str, expected: str) -> None:
    assert normalize_type(given) == expected


@pytest.mark.parametrize("bad", ["ipp", "_ipp._sctp", "_ipp", "", "_a b._tcp", "_" + "x" * 20 + "._tcp"])
def test_bad_types_rejected(bad: str) -> None:
    with pytest.raises(RecordError):
        normalize_type(bad)


def test_only_routable_addresses_survive() -> None:
    given = [
        "127.0.0.1",
        "169.254.1.1",
        "fe80::1",
        "::1",
        "0.0.0.0",
        "224.0.0.251",
        "::",
        "10.0.0.7",
        "2001:db8::1",
        "not-an-ip",
        "10.0.0.7",
    ]
    assert routable_addresses(given) == ("10.0.0.7", "2001:db8::1")


@pytest.mark.parametrize(
    ("name", "label"),
    [("Printer.local.", "printer"), ("My Mac (2)", "my-mac-2"), ("..", "host"), ("x" * 80, "x" * 63)],
)
def test_host_label_is_ldh(name: str, label: str) -> None:
    assert host_label(name) == label
