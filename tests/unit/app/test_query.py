"""`z2z browse`/`resolve`: the pure part that picks live versions."""

from dataclasses import replace

from z2z.app.query import live_services
from z2z.core.records import Service
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
