"""`z2z browse`/`resolve`: the pure part that picks live versions."""

from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from z2z.app.query import live_services, rejected_line
from z2z.core.records import Service
from z2z.core.security import Codec
from z2z.core.wire import envelope as protocol
from z2z.core.wire.envelope import Envelope

T = "_ipp._tcp"
NOW = 1_800_000_000.0
SVC = Service(T, "Printer", "printer", 631, (b"rp=x",), ("10.1.0.9",))


def env(site: str, seq: int, gone: bool = False, ts: float = NOW, **kw: object) -> bytes:
    svc = replace(SVC, **kw)  # type: ignore[arg-type]
    return protocol.encode(Envelope("z2z", site, "00" * 8, seq, ts, 120, gone, svc))


def test_newest_version_per_site_and_instance() -> None:
    values = [env("a", 1, port=1), env("a", 3, port=3), env("a", 2, port=2), env("b", 1)]
    found = live_services(values, "z2z", T, NOW)
    assert [(e.site, e.service.port) for e in found.envelopes] == [("a", 3), ("b", 631)]


def test_tombstones_expired_and_garbage_are_dropped() -> None:
    values = [
        env("a", 1),
        env("a", 2, gone=True),
        env("b", 1, ts=NOW - 1000),
        b"junk",
        env("c", 1, instance="Other"),
    ]
    found = live_services(values, "z2z", T, NOW)
    assert [(e.site, e.service.instance) for e in found.envelopes] == [("c", "Other")]
    assert found.rejected == 1
    assert live_services(values, "elsewhere", T, NOW).rejected == len(values)


def test_refused_values_are_counted_by_reason_in_one_line() -> None:
    secret = b"s" * 32
    writer = Codec("z2z", secret, Ed25519PrivateKey.generate())
    key = writer.type_key(T)
    values = [
        writer.seal(env("a", 1), key),  # the one good value
        b"junk",  # garbage
        env("b", 1),  # unsealed in a private network
        Codec("z2z", b"o" * 32, Ed25519PrivateKey.generate()).seal(env("c", 1), key),  # another secret
        writer.seal(b"{not json", key),
        b"Z2Z\x02" + bytes(9000),  # oversized
        writer.seal(protocol.encode(Envelope("other", "d", "00" * 8, 1, NOW, 120, False, SVC)), key),
    ]
    found = live_services(values, "z2z", T, NOW, codec=Codec("z2z", secret))
    assert [e.site for e in found.envelopes] == ["a"]
    assert found.rejected == 6
    assert dict(found.reasons) == {
        "not-sealed": 2,
        "bad-seal": 1,
        "not-json": 1,
        "too-large": 1,
        "other-network": 1,
    }
    line = rejected_line(found, "z2z")
    assert line == (
        "z2z: ignored 6 value(s) that are not valid z2z records of network z2z "
        "(bad-seal 1, not-json 1, not-sealed 2, other-network 1, too-large 1)"
    )
    assert rejected_line(live_services(values[:1], "z2z", T, NOW, codec=Codec("z2z", secret)), "z2z") is None
