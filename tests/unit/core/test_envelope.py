"""Unit tests of the DHT value envelope: strict, bounded, versioned."""

import base64
import json

import pytest

from z2z.core.records import Service
from z2z.core.wire import envelope as protocol
from z2z.core.wire.envelope import Envelope, ProtocolError

SVC = Service("_ipp._tcp", "Printer", "printer", 631, (b"rp=ipp/print",), ("10.1.0.9",))
ENV = Envelope("z2z", "campus-a", "0123456789abcdef", 42, 1_700_000_000.5, 120, False, SVC)


def test_round_trip() -> None:
    assert protocol.decode(protocol.encode(ENV)) == ENV


def test_typical_value_is_small() -> None:
    assert len(protocol.encode(ENV)) < 1024


def test_keys_depend_on_network_and_type() -> None:
    k = protocol.type_key("z2z", "_ipp._tcp")
    assert len(k) == 20
    assert k != protocol.type_key("other", "_ipp._tcp")
    assert k != protocol.type_key("z2z", "_http._tcp")


def test_value_ids_change_per_version_and_are_nonzero() -> None:
    ids = {protocol.value_id("a", "_ipp._tcp", "P", seq) for seq in range(1000)}
    assert len(ids) == 1000 and 0 not in ids
    assert all(0 < i < 2**64 for i in ids)


def _mutate(**changes: object) -> bytes:
    doc = json.loads(protocol.encode(ENV))
    for k, v in changes.items():
        if v is KeyError:
            del doc[k]
        else:
            doc[k] = v
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "not-json"),
        (b"[1,2]", "not-json"),
        (b"{" * 5000, "not-json"),
        (b"x" * 9000, "too-large"),
        (_mutate(z2z=2), "bad-version"),
        (_mutate(extra=1), "bad-field"),
        (_mutate(seq="1"), "bad-field"),
        (_mutate(seq=True), "bad-field"),
        (_mutate(seq=-1), "bad-field"),
        (_mutate(ttl=0), "bad-field"),
        (_mutate(ttl=10**9), "bad-field"),
        (_mutate(node="zz"), "bad-field"),
        (_mutate(site="../etc"), "bad-site"),
        (_mutate(site=""), "bad-site"),
        (_mutate(site=KeyError), "bad-field"),
        (_mutate(type="ipp"), "bad-dns"),
        (_mutate(dns="!!!"), "bad-dns"),
        (_mutate(dns=base64.b64encode(b"\x00" * 30).decode()), "bad-dns"),
        (_mutate(sig=5), "bad-field"),
    ],
)
def test_bad_values_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.decode(data)
    assert err.value.reason == reason
