"""`z2z browse`/`resolve` in every stage: following the leaders registry into the leaders' DHT,
within one time budget, with one line when nothing (or only part) answers."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app import query
from z2z.app.cli import main
from z2z.app.query import Progress, fetch, leaders_dht_contacts
from z2z.core.records import Service
from z2z.core.security import Codec
from z2z.core.wire import envelope as protocol
from z2z.core.wire.envelope import Envelope
from z2z.core.wire.gateways import LeaderRecord, seal_record

T = "_ipp._tcp"
SVC = Service(T, "Printer", "printer", 631, (b"rp=x",), ("10.1.0.9",))
S1, S2 = "a1" * 8, "b2" * 8


def record(node: str, structure: str, contact: str, ts: float, site: str = "campus-a") -> LeaderRecord:
    return LeaderRecord("z2z", site, node, contact, structure, 1, ts, 60)


def test_contacts_of_the_structure_the_leaders_themselves_choose() -> None:
    now = time.time()
    codec = Codec("z2z")
    values = [
        seal_record(record(S1, S1, "10.0.0.1:4222", now), codec),  # the founder
        seal_record(record("c3" * 8, S1, "10.0.0.3:4222", now - 5), codec),
        seal_record(record("d4" * 8, S2, "10.0.0.4:4222", now), codec),  # a smaller structure
        seal_record(record("e5" * 8, "", "10.0.0.5:4222", now), codec),  # not structured yet
        seal_record(record("f6" * 8, S1, "10.0.0.6:4222", now - 1000), codec),  # expired
        b"{not a record",
    ]
    structure, contacts, bad = leaders_dht_contacts(values, codec, now)
    assert (structure, contacts, bad) == (S1, ("10.0.0.1:4222", "10.0.0.3:4222"), 1)
    # stage 2 only: no leaders' DHT to read
    assert leaders_dht_contacts(values[4:5], codec, now) == ("", (), 0)
    # a private network reads only records sealed with its secret
    private = Codec("z2z", b"s" * 32)
    assert leaders_dht_contacts(values[:3], private, now) == ("", (), 3)
    writer = Codec("z2z", b"s" * 32, signing_key=Ed25519PrivateKey.generate())
    sealed = [seal_record(record(S1, S1, "10.0.0.1:4222", now), writer)]
    assert leaders_dht_contacts(sealed, private, now)[1] == ("10.0.0.1:4222",)


def dead_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def rendezvous(monkeypatch: pytest.MonkeyPatch) -> MemoryDht:
    dht = MemoryDht()
    monkeypatch.setattr(query, "open_rendezvous", lambda url: MemoryRendezvous(dht))
    return dht


async def test_an_unreachable_leaders_dht_costs_its_budget_share_and_one_warning(
    rendezvous: MemoryDht,
) -> None:
    codec = Codec("z2z")
    now = time.time()
    env = Envelope("z2z", "campus-a", "00" * 8, 1, now, 120, False, SVC)
    rendezvous.values[codec.type_key(T)] = {1: protocol.encode(env)}
    contact = f"127.0.0.1:{dead_udp_port()}"  # nobody answers there
    rendezvous.values[codec.leaders_key()] = {2: seal_record(record(S1, S1, contact, now), codec)}
    t0 = time.monotonic()
    found = await fetch(None, "z2z", T, budget=6.0)
    elapsed = time.monotonic() - t0
    assert [e.service.instance for e in found.envelopes] == ["Printer"]
    assert found.sources == ("rendezvous",)
    [warning] = found.warnings
    assert warning.startswith("z2z: the leaders' DHT did not answer via " + contact)
    assert "\n" not in warning
    assert elapsed < 6.5, elapsed


async def test_a_rendezvous_that_never_answers_ends_the_query_within_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Stuck(MemoryRendezvous):
        async def start(self) -> None:
            await asyncio.sleep(3600)

    monkeypatch.setattr(query, "open_rendezvous", lambda url: Stuck(MemoryDht()))
    t0 = time.monotonic()
    with pytest.raises(query.RendezvousError, match="no answer within 4 s"):
        await fetch("http://x:1", "z2z", T, budget=4.0)
    assert time.monotonic() - t0 < 4.5


async def test_progress_speaks_only_after_a_second() -> None:
    said: list[str] = []
    quick = Progress(said.append, after=0.2)
    quick.start()
    quick.step("one")
    quick.stop()
    await asyncio.sleep(0.3)
    assert said == []
    slow = Progress(said.append, after=0.05)
    slow.start()
    slow.step("waiting for the rendezvous")
    await asyncio.sleep(0.1)
    slow.step("reading the leaders' DHT")
    slow.stop()
    assert said == ["waiting for the rendezvous", "reading the leaders' DHT"]


def test_nothing_reachable_is_one_line_and_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["browse", "--public", "--rendezvous", "http://127.0.0.1:9", "--timeout", "3", T])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert len(err) == 1 and err[0].startswith("z2z: cannot read the rendezvous http://127.0.0.1:9"), err
    assert main(["browse", "--public", "--timeout", "0.5", T]) == 2


needs_opendht = pytest.mark.skipif(
    __import__("importlib").util.find_spec("opendht") is None, reason="needs the opendht wheel"
)


@needs_opendht
async def test_browse_follows_the_registry_into_a_real_leaders_dht(dht_network: Any) -> None:
    """Real parts on loopback: two dhtnodes as the rendezvous (REST proxy), two embedded
    OpenDHT nodes on the z2z network id as the leaders' DHT; the printer is put only there."""
    from z2z.adapters.rendezvous import EmbeddedRendezvous, ProxyRendezvous
    from z2z.core.wire.gateways import network_id

    codec = Codec("z2z")
    now = time.time()
    opts: dict[str, Any] = {"ipv4": "127.0.0.1", "ipv6": "::1", "network_id": network_id("z2z")}
    first = EmbeddedRendezvous([], **opts)
    await first.start()
    second = EmbeddedRendezvous([("127.0.0.1", first.bound_port or 0)], **opts, bootstrap_timeout=5.0)
    await second.start()
    proxy = ProxyRendezvous(dht_network.proxy_urls[0])
    await proxy.start()
    try:
        contact = f"127.0.0.1:{first.bound_port}"
        await proxy.put(codec.leaders_key(), 7, seal_record(record(S1, S1, contact, now), codec))
        env = Envelope("z2z", "campus-a", "00" * 8, 1, now, 120, False, SVC)
        await second.put(codec.type_key(T), 9, protocol.encode(env))
        found = await fetch(dht_network.proxy_urls[1], "z2z", T, budget=15.0)
    finally:
        await proxy.close()
        await second.close()
        await first.close()
    assert found.warnings == ()
    assert found.sources == ("rendezvous", "leaders' DHT")
    assert [(e.site, e.service.instance, e.service.port) for e in found.envelopes] == [
        ("campus-a", "Printer", 631)
    ]


async def test_an_unreadable_registry_still_shows_the_services(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = Codec("z2z")
    dht = MemoryDht()
    env = Envelope("z2z", "campus-a", "00" * 8, 1, time.time(), 120, False, SVC)
    dht.values[codec.type_key(T)] = {1: protocol.encode(env)}

    class NoRegistry(MemoryRendezvous):
        async def get(self, key: bytes) -> list[Any]:
            if key == codec.leaders_key():
                raise query.RendezvousError("HTTP 500")
            return await super().get(key)

    monkeypatch.setattr(query, "open_rendezvous", lambda url: NoRegistry(dht))
    found = await fetch("http://x:1", "z2z", T, budget=5.0)
    assert [e.service.instance for e in found.envelopes] == ["Printer"]
    assert found.warnings == ("z2z: cannot read the leaders registry (HTTP 500); leaders' DHT skipped",)


async def test_bad_registry_and_service_values_are_counted_once_by_reason(rendezvous: MemoryDht) -> None:
    codec = Codec("z2z")
    env = Envelope("z2z", "campus-a", "00" * 8, 1, time.time(), 120, False, SVC)
    rendezvous.values[codec.type_key(T)] = {1: protocol.encode(env), 2: b"{junk", 3: b"{junk"}
    rendezvous.values[codec.leaders_key()] = {4: b"{not a record", 5: b"\xff" * 40}
    found = await fetch(None, "z2z", T, budget=5.0)
    assert [e.service.instance for e in found.envelopes] == ["Printer"]
    assert found.sources == ("rendezvous",) and found.warnings == ()
    assert found.reasons == (("leader-record/bad-record", 2), ("not-json", 1))  # the same bytes: once
    assert query.rejected_line(found, "z2z") == (
        "z2z: ignored 3 value(s) that are not valid z2z records of network z2z "
        "(leader-record/bad-record 2, not-json 1)"
    )
