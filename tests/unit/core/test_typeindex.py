"""The type index (z2z.core.typeindex): how `import-types = ["*"]` learns the types
other sites export, even ones never seen on its own link."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from support.helpers import PRINTER, until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app.config import build
from z2z.app.gateway import Gateway
from z2z.core.records import Service
from z2z.core.typeindex import MAX_TYPES, SiteTypes, TypeIndex, TypeIndexError, decode, encode

NOW = 1_800_000_000.0
MUSIC = Service("_daap._tcp", "Music", "nas", 3689, (), ("10.1.0.7",))


def test_round_trip_and_strictness() -> None:
    e = SiteTypes("z2z", "campus-a", NOW, 120, ("_ipp._tcp", "_daap._tcp"))
    assert decode(encode(e)) == SiteTypes("z2z", "campus-a", NOW, 120, ("_daap._tcp", "_ipp._tcp"))
    doc = json.loads(encode(e))
    for bad in (
        {**doc, "extra": 1},
        {**doc, "types": ["ipp"]},
        {**doc, "ttl": 0},
        {**doc, "ts": True},
        {**doc, "site": "bad site"},
        {**doc, "types": ["_a._tcp"] * (MAX_TYPES + 1)},
        [1],
    ):
        with pytest.raises(TypeIndexError):
            decode(json.dumps(bad).encode())
    for junk in (b"\xff", b"{", b"x" * 5000):
        with pytest.raises(TypeIndexError):
            decode(junk)


def test_put_on_change_and_refresh_only() -> None:
    ti = TypeIndex("z2z", "campus-a", 120, 40.0, 30.0)
    assert ti.due([], NOW) is None  # nothing exported, nothing to say
    assert decode(ti.due(["_ipp._tcp"], NOW) or b"").types == ("_ipp._tcp",)
    assert ti.due(["_ipp._tcp"], NOW + 10) is None
    assert ti.due(["_ipp._tcp"], NOW + 40) is not None  # refresh
    assert decode(ti.due([], NOW + 41) or b"").types == ()  # retracted once
    assert ti.due([], NOW + 200) is None


def test_receive_newest_live_entries_of_other_sites() -> None:
    ti = TypeIndex("z2z", "campus-b", 120, 40.0, 30.0)

    def entry(site: str, ts: float, *types: str, net: str = "z2z") -> bytes:
        return encode(SiteTypes(net, site, ts, 120, types))

    assert ti.receive(entry("campus-b", NOW, "_ipp._tcp"), NOW) == []  # our own
    assert ti.receive(entry("campus-a", NOW, "_ipp._tcp", net="other"), NOW) == []
    assert ti.receive(entry("campus-a", NOW - 500, "_ipp._tcp"), NOW) == []  # expired
    assert ti.receive(entry("campus-a", NOW, "_ipp._tcp", "_daap._tcp"), NOW) == ["_daap._tcp", "_ipp._tcp"]
    assert ti.receive(entry("campus-c", NOW, "_ipp._tcp", "_raop._tcp"), NOW) == ["_raop._tcp"]
    assert ti.receive(entry("campus-a", NOW - 1, "_x._tcp"), NOW) == []  # older than what we have
    assert ti.known(NOW) == {"_daap._tcp", "_ipp._tcp", "_raop._tcp"}
    assert ti.known(NOW + 1000) == set()


async def test_import_star_learns_types_from_other_sites(tmp_path: Path) -> None:
    dht = MemoryDht()
    a = Gateway(
        build(
            {},
            {
                "site": "campus-a",
                "type": ("_ipp._tcp", "_daap._tcp"),
                "election": False,
                "public": True,
                "import-types": (),
                "state-dir": str(tmp_path / "a"),
            },
        ),
        MemoryLink(),
        MemoryRendezvous(dht),
    )
    b = Gateway(
        build(
            {},
            {
                "site": "campus-b",
                "export-types": (),
                "import-types": ("*",),
                "deny-types": ("_daap._tcp",),
                "election": False,
                "public": True,
                "state-dir": str(tmp_path / "b"),
            },
        ),
        MemoryLink(),
        MemoryRendezvous(dht),
    )
    await a.start()
    await b.start()
    try:
        a.service_up(PRINTER)
        a.service_up(MUSIC)
        # b's link never showed _ipp._tcp: the index tells it; _daap._tcp is denied there
        await until(lambda: list(b.link.published) == [("_ipp._tcp", "Printer")])
        st = b.status().types
        assert st["exported_elsewhere"] == ["_ipp._tcp"]
        assert "_services._dns-sd._udp" in st["listening"]
        await asyncio.sleep(0.3)
        assert list(b.link.published) == [("_ipp._tcp", "Printer")]
    finally:
        await asyncio.gather(a.stop(), b.stop())
