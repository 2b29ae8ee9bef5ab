"""Site summaries (anti-entropy by digest): strict codec, and exporter and importer agree.

The digest an exporting bridge puts in its summary must equal the one an importing
bridge computes over what it imported from it, or every anti-entropy round would
fall back to a full get."""

from __future__ import annotations

import pytest
from support.helpers import PRINTER, T

from z2z.core.bridge import Bridge, BridgeSettings, Put
from z2z.core.records import Service
from z2z.core.wire import digest as digests
from z2z.core.wire.digest import Summary, SummaryError

NOW = 1_800_000_000.0


def bridge(site: str) -> Bridge:
    return Bridge(BridgeSettings(site=site, network="z2z", node="0123456789abcdef", types=(T,)))


def test_summary_round_trip_and_strictness() -> None:
    s = Summary("z2z", "campus-a", T, 17, 2, "0" * 32)
    data = digests.encode(s)
    assert digests.decode(data) == s
    assert len(data) < 200  # a few hundred bytes per site, whatever it exports
    for bad in (
        b"not json",
        data.replace(b'"sum":1', b'"sum":2'),
        data.replace(b'"n":2', b'"n":true'),
        data.replace(b'"d":"' + b"0" * 32, b'"d":"' + b"g" * 32),
        data.replace(b"campus-a", b"-bad"),
        data[:-1] + b',"extra":1}',
        b" " * 2000,
    ):
        with pytest.raises(SummaryError):
            digests.decode(bad)


def test_digest_ignores_versions_and_sees_content() -> None:
    other = Service(T, "Other", "printer", 631, (), ("10.1.0.10",))
    one = digests.set_digest(
        [("Printer", digests.content_digest(PRINTER)), ("Other", digests.content_digest(other))]
    )
    swapped = digests.set_digest(
        [("Other", digests.content_digest(other)), ("Printer", digests.content_digest(PRINTER))]
    )
    assert one == swapped and one[0] == 2
    moved = Service(T, "Printer", "printer", 632, (b"rp=ipp/print",), ("10.1.0.9",))
    assert (
        digests.set_digest(
            [("Printer", digests.content_digest(moved)), ("Other", digests.content_digest(other))]
        )
        != one
    )
    assert digests.set_digest(()) == (0, digests.set_digest([])[1])


def test_importer_digest_equals_exporter_digest() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    services = [
        PRINTER,
        Service(T, "Room 2.14 Printer", "p2", 9100, (b"a=1", b"a=1", b"\xff"), ("10.1.0.11", "fd77:1::11")),
    ]
    puts: list[Put] = []
    for svc in services:
        puts += [x for x in a.local_up(svc, NOW) if isinstance(x, Put)]
    for put in puts:
        b.remote_value(T, put.data, NOW + 1)
    assert b.import_digests(T) == {"campus-a": a.export_digest(T)}
    assert b.import_digest("campus-a", T) == a.export_digest(T)
    # A new version of the same records (a refresh near the TTL) leaves the digest alone...
    before = a.export_digest(T)
    new = a.reput_all(NOW + 2)
    for put in new:
        assert isinstance(put, Put)
        b.remote_value(T, put.data, NOW + 3)
    assert a.export_digest(T) == before == b.import_digest("campus-a", T)
    # ...a change does not.
    for put in a.local_up(Service(T, "Printer", "printer", 632, (), ("10.1.0.9",)), NOW + 4):
        if isinstance(put, Put):
            b.remote_value(T, put.data, NOW + 5)
    assert a.export_digest(T) != before
    assert b.import_digest("campus-a", T) == a.export_digest(T)
    assert b.next_import_expiry(T) is not None
