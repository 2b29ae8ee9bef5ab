"""Memory that stays flat (issue 14 part 5): what is keyed by names or values is bounded.

A link where new instance names come and go forever (bench/soak.py) brings new
values forever; every structure they touch must forget them again.  The soak
measures the RSS; these tests guard each bound.
"""

from __future__ import annotations

from pathlib import Path

from support.helpers import T

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app.bridging import DHT_VALUE_LIFETIME, SEEN_FORGET_AFTER
from z2z.app.config import build
from z2z.app.gateway import Gateway


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _gateway(tmp_path: Path, clock: Clock) -> Gateway:
    cfg = build(
        {},
        {"site": "campus-b", "type": (T,), "state-dir": str(tmp_path), "election": False, "public": True},
    )
    return Gateway(cfg, MemoryLink(), MemoryRendezvous(MemoryDht()), clock=clock)


def test_digests_of_values_gone_from_the_dht_are_forgotten(tmp_path: Path) -> None:
    clock = Clock()
    gw = _gateway(tmp_path, clock)
    kept = b"a value the DHT keeps returning"
    # Four values a second for an hour, each one new (a churning printer's versions).
    for i in range(4 * 3600):
        gw.bridging.remote_value(T, b"value %d" % i, clock.now)
        if i % 40 == 0:
            gw.bridging.remote_value(T, kept, clock.now)  # returned by every anti-entropy get
            gw.bridging.tick()
        clock.now += 0.25
    gw.bridging.tick()
    # What was returned within SEEN_FORGET_AFTER at most: not an hour of them.
    assert len(gw.bridging.seen_values) <= 4 * SEEN_FORGET_AFTER + 2
    assert SEEN_FORGET_AFTER > DHT_VALUE_LIFETIME  # never forgotten while the DHT may still hold it
    # The value still returned is still known: not decoded again.
    skipped = gw.bridging.skipped_known
    gw.bridging.remote_value(T, kept, clock.now)
    assert gw.bridging.skipped_known == skipped + 1
    # Once nothing comes back, nothing is kept.
    clock.now += SEEN_FORGET_AFTER + 1
    gw.bridging.tick()
    assert len(gw.bridging.seen_values) == 0


def test_the_count_bound_still_holds_within_the_age_window(tmp_path: Path) -> None:
    clock = Clock()
    gw = _gateway(tmp_path, clock)
    gw.bridging.seen_max = 100
    for i in range(1000):
        gw.bridging.remote_value(T, b"burst %d" % i, clock.now)
    assert len(gw.bridging.seen_values) == 100


async def test_refreshes_of_names_that_came_and_went_do_not_pile_up_in_python_zeroconf() -> None:
    """A real python-zeroconf browser (on loopback): N names come and go, its schedule stays small."""
    from zeroconf import DNSIncoming, DNSOutgoing, DNSPointer, IPVersion
    from zeroconf.const import _CLASS_IN, _FLAGS_AA, _FLAGS_QR_RESPONSE, _TYPE_PTR

    from z2z.adapters.link.zeroconf import ZeroconfLink
    from z2z.adapters.link.zeroconf_ext import STALE_QUERIES_SLACK, compact_query_schedule

    class Listener:
        def service_up(self, service: object) -> None: ...
        def service_down(self, service_type: str, instance: str) -> None: ...
        def service_refused(self, name: str, reason: str) -> None: ...

    link = ZeroconfLink(["127.0.0.1"], ip_version=IPVersion.V4Only)
    await link.start([T], Listener())  # type: ignore[arg-type]
    try:
        assert link._aiozc is not None
        zc = link._aiozc.zeroconf
        browser = link._browsers[0]
        heap = browser.query_scheduler._query_heap

        def receive(name: str, ttl: int) -> None:
            out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
            out.add_answer_at_time(DNSPointer(f"{T}.local.", _TYPE_PTR, _CLASS_IN, ttl, name), 0)
            for packet in out.packets():
                zc.record_manager.async_updates_from_response(DNSIncoming(packet))

        names = 2000
        for i in range(names):  # each name announced (TTL 4,500 s), then its goodbye
            receive(f"Churn {i:05d}.{T}.local.", 4500)
            receive(f"Churn {i:05d}.{T}.local.", 0)
        assert len(heap) >= names  # python-zeroconf alone keeps a cancelled refresh per name
        assert compact_query_schedule(browser) >= names - STALE_QUERIES_SLACK
        live = len(browser.query_scheduler._next_scheduled_for_alias)
        assert len(heap) == live <= 20
        assert compact_query_schedule(browser) == 0  # nothing more to drop
    finally:
        await link.close()
