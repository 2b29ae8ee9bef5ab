"""A hostile local link and the bridge: flap damping (the damper, what is exported while a
service flaps) and the cap on how many local services are tracked."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from z2z.core.bridge import Bridge, BridgeSettings, Damped, Publish, Put, Withdraw
from z2z.core.flap import FlapDamper
from z2z.core.records import Service
from z2z.core.wire import envelope as protocol

T = "_ipp._tcp"
PRINTER = Service(T, "Printer", "printer", 631, (b"state=idle",), ("10.1.0.9",))
NOW = 1_800_000_000.0


def bridge(**kw: object) -> Bridge:
    return Bridge(BridgeSettings(site="campus-a", network="z2z", node="00" * 8, types=(T,), **kw))  # type: ignore[arg-type]


def puts(actions: list) -> list[Put]:
    return [a for a in actions if isinstance(a, Put)]


def exported_state(put: Put) -> protocol.Envelope:
    return protocol.decode(put.data)


def test_damper_holds_after_the_suppress_threshold_and_releases_below_reuse() -> None:
    d = FlapDamper(10.0)
    assert [d.flap("k", NOW) for _ in range(4)] == [False] * 4  # 4.0 is not above 4
    assert d.flap("k", NOW) is True and d.held("k", NOW)
    assert d.release(NOW + 1) == []
    # from 5 to below 1: log2(5) ≈ 2.32 half-lives
    assert d.held("k", NOW + 23.0)
    assert d.release(NOW + 23.0) == []
    assert not d.held("k", NOW + 23.3)
    assert d.release(NOW + 23.3) == ["k"]
    assert d.release(NOW + 200) == [] and "k" not in d  # forgotten once decayed


def test_damper_ceiling_bounds_the_hold() -> None:
    d = FlapDamper(10.0)
    for i in range(10_000):  # a service flapping every 100 ms for 1,000 s
        d.flap("k", NOW + i / 10)
    end = NOW + 1000
    assert d.max_hold() == pytest.approx(30.0)
    assert d.held("k", end + 29.9) and not d.held("k", end + 30.1)


def test_slow_changes_are_never_held() -> None:
    d = FlapDamper(10.0)
    assert not any(d.flap("k", NOW + 5 * i) for i in range(1000))  # a change every 5 s


def test_damping_off_and_bad_thresholds() -> None:
    d = FlapDamper(0)
    assert not any(d.flap("k", NOW) for _ in range(100))
    assert not d.held("k", NOW) and len(d) == 0
    with pytest.raises(ValueError):
        FlapDamper(10.0, reuse=5.0, suppress=4.0)


@given(st.lists(st.floats(0, 100), max_size=60), st.floats(0.1, 60))
def test_every_hold_ends_within_max_hold_of_the_last_change(gaps: list[float], half_life: float) -> None:
    d = FlapDamper(half_life)
    t = NOW
    for gap in gaps:
        t += gap
        d.flap("k", t)
    d.release(t + d.max_hold() + 1e-6 * half_life + 1e-6)
    assert not d.held("k", t + d.max_hold() + 1e-3)
    assert d.held_keys() == []


def test_txt_flapping_every_100ms_is_held_then_the_final_state_is_exported() -> None:
    b = bridge(refresh=5.0)
    sent = puts(b.local_up(PRINTER, NOW))
    events: list = []
    t = NOW
    for i in range(100):  # 10 s of a TXT that changes every 100 ms
        t = NOW + 0.1 * (i + 1)
        acts = b.local_up(replace(PRINTER, txt=(f"state={i}".encode(),)), t)
        sent += puts(acts)
        events += [a for a in acts if isinstance(a, Damped)]
    # the first 4 changes go out, then the service is held: one Damped notice, no more puts
    assert len(sent) == 5
    assert [(e.instance, e.held) for e in events] == [("Printer", True)]
    assert b.held() == [(T, "Printer")] and b.stats.damped == 1
    # while held, refreshes keep the last exported state alive on other sites
    refresh = puts(b.tick(t + 5))
    assert [exported_state(p).service.txt for p in refresh] == [(b"state=3",)]
    # it settles: within max_hold the current state goes out, once
    released = b.tick(t + 30.5)
    [final] = puts(released)
    assert exported_state(final).service.txt == (b"state=99",)
    [note] = [a for a in released if isinstance(a, Damped)]
    assert not note.held and note.changes == 96
    assert b.held() == [] and puts(b.tick(t + 31)) == []


def test_up_down_flapping_ends_with_a_tombstone_if_the_service_stayed_away() -> None:
    b = bridge()
    sent = puts(b.local_up(PRINTER, NOW))
    t = NOW
    for i in range(50):
        t = NOW + 0.1 * (i + 1)
        acts = b.local_down(T, "Printer", t) if i % 2 == 0 else b.local_up(PRINTER, t)
        sent += puts(acts)
    assert len(sent) <= 5
    assert b.held() == [(T, "Printer")]
    # the last event was a goodbye (i = 49 is odd: up; so send one more goodbye)
    b.local_down(T, "Printer", t + 0.1)
    assert [e.instance for e in b.exports()] == ["Printer"]  # still exported as it was
    [tomb] = puts(b.tick(t + 40))
    assert tomb.gone and b.exports() == []


def test_a_new_service_and_a_goodbye_are_not_flaps() -> None:
    b = bridge()
    for i in range(20):  # 20 different printers come and go once each: no damping
        svc = replace(PRINTER, instance=f"P{i}")
        assert len(puts(b.local_up(svc, NOW + i))) == 1
        assert len(puts(b.local_down(T, svc.instance, NOW + i + 0.01))) == 1
    assert b.stats.damped == 0


def test_damping_can_be_turned_off_and_reload_releases_holds() -> None:
    b = bridge(flap_half_life=0)
    n = sum(len(puts(b.local_up(replace(PRINTER, port=1000 + i), NOW + i / 10))) for i in range(30))
    assert n == 30
    b = bridge()
    for i in range(10):
        b.local_up(replace(PRINTER, port=1000 + i), NOW + i / 10)
    assert b.held()
    acts = b.reconfigure(replace(b.settings, flap_half_life=0), NOW + 2)
    [final] = puts(acts + b.tick(NOW + 2))
    assert exported_state(final).service.port == 1009 and b.held() == []


def test_a_device_announcing_thousands_of_names_is_capped() -> None:
    from z2z.core.security import ImportRules, SiteLimits

    b = bridge(rules=ImportRules(default=SiteLimits(max_services=100)))
    exported = sum(len(puts(b.local_up(replace(PRINTER, instance=f"Spam {i}"), NOW))) for i in range(5000))
    assert exported == 100 and len(b.exports()) == 100
    assert b.stats.rejected["local-quota"] == 4900
    # a service that leaves makes room; the ones already there keep being updated
    b.local_down(T, "Spam 0", NOW + 1)
    assert len(puts(b.local_up(replace(PRINTER, instance="Newcomer"), NOW + 2))) == 1
    assert len(puts(b.local_up(replace(PRINTER, instance="Spam 1", port=9), NOW + 3))) == 1


def link_actions(actions: list) -> list:
    return [a for a in actions if isinstance(a, Publish | Withdraw)]


def test_a_flapping_import_is_held_on_the_link_and_settles_to_the_last_version() -> None:
    rogue = bridge(flap_half_life=0)  # a site that does not damp (or lies about it)
    b = Bridge(BridgeSettings(site="campus-b", network="z2z", node="11" * 8, types=(T,)))
    seen: list = []
    t = NOW
    for i in range(100):  # 10 s: gone, back, gone, back... every 100 ms
        t = NOW + 0.1 * i
        acts = rogue.local_up(PRINTER, t) if i % 2 == 0 else rogue.local_down(T, "Printer", t)
        for put in puts(acts):
            seen += b.remote_value(T, put.data, t)
    changes = link_actions(seen)
    assert 1 <= len(changes) <= 6, changes
    assert [(d.site, d.held) for d in seen if isinstance(d, Damped)] == [("campus-a", True)]
    assert b.held_imports() == [("campus-a", T, "Printer")]
    shown = [s.instance for _, s in b.imports()]
    # the last version was a tombstone: once settled, the link drops the printer, once
    settled = b.tick(t + 30.5)
    assert [type(a).__name__ for a in link_actions(settled)] == (["Withdraw"] if shown else [])
    assert b.imports() == [] and b.held_imports() == []


def test_an_import_whose_records_keep_changing_settles_on_the_newest() -> None:
    rogue = bridge(flap_half_life=0)
    b = Bridge(BridgeSettings(site="campus-b", network="z2z", node="11" * 8, types=(T,)))
    published = 0
    t = NOW
    for i in range(50):
        t = NOW + 0.1 * i
        for put in puts(rogue.local_up(replace(PRINTER, port=1000 + i), t)):
            published += len(link_actions(b.remote_value(T, put.data, t)))
    assert published <= 6
    [final] = link_actions(b.tick(t + 30.5))
    assert isinstance(final, Publish) and final.service.port == 1049
    assert final.service.instance == "Printer"  # same name on the link throughout
