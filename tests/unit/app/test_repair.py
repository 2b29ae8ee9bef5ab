"""Anti-entropy that scales (issue 17): values already handled are not decoded again, an
oversized answer is its own condition (not an outage), and the caps follow the quotas.

In-memory doubles here; tests/unit/adapters/test_rendezvous_scale.py does the same
against real dhtnodes with 1,000 services."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support.helpers import PRINTER, T, until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.base import AnswerTooBig, DhtValue
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.adapters.rendezvous.proxy import LISTEN_FLOOD_PER_MINUTE, ProxyRendezvous
from z2z.app.bridging import MIN_VALUE_CAP, apply_value_cap, value_cap, versions_per_instance
from z2z.app.config import build
from z2z.app.gateway import Gateway


@pytest.fixture
def pair(tmp_path: Path):  # type: ignore[no-untyped-def]
    dht = MemoryDht()
    gws = []
    for site in ("campus-a", "campus-b"):
        cfg = build(
            {},
            {
                "site": site,
                "type": (T,),
                "state-dir": str(tmp_path / site),
                "election": False,
                "public": True,
            },
        )
        gws.append(Gateway(cfg, MemoryLink(), MemoryRendezvous(dht)))
    return dht, gws[0], gws[1]


async def test_a_value_already_pushed_is_not_decoded_again_by_the_repair(pair) -> None:  # type: ignore[no-untyped-def]
    dht, a, b = pair
    await a.start()
    await b.start()
    a.service_up(PRINTER)
    await until(lambda: (T, "Printer") in b.link.published)
    decoded: list[bytes] = []
    original = b.bridge.remote_value

    def counting(service_type: str, data: bytes, now: float):  # type: ignore[no-untyped-def]
        decoded.append(data)
        return original(service_type, data, now)

    b.bridge.remote_value = counting
    await b.bridging.anti_entropy()
    await b.bridging.anti_entropy()
    assert decoded == []  # the get returned the pushed value twice: neither was decoded
    assert b.bridging.skipped_known >= 2
    # A new version is new: decoded once, whether pushed or found by the get.
    a.service_up(PRINTER.__class__(T, "Printer", "printer", 632, (), ("10.1.0.9",)))
    await until(lambda: b.link.published[(T, "Printer")].port == 632)
    await b.bridging.anti_entropy()
    assert len(decoded) == 1
    await a.stop()
    await b.stop()


async def test_an_oversized_answer_is_its_own_condition_and_still_repairs(
    pair, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    dht, a, b = pair
    await a.start()
    await b.start()
    b.bridging.listens.pop(T).cancel()  # the push is lost: b hears nothing
    b.bridging.listens[T] = b.rendezvous.listen(b.bridge.key_for("_none._tcp"), lambda v, e: None)
    a.service_up(PRINTER)
    await until(lambda: bool(dht.values))
    assert (T, "Printer") not in b.link.published
    original = b.rendezvous.get

    async def too_big(key: bytes) -> list[DhtValue]:
        values = await original(key)
        raise AnswerTooBig("more than 1 values under one key; stopped reading", values[:1])

    b.rendezvous.get = too_big
    caplog.set_level(logging.DEBUG, logger="z2z.app.bridging")
    await b.bridging.anti_entropy()
    await b.bridging.anti_entropy()
    await until(lambda: (T, "Printer") in b.link.published)  # repaired from what was read
    status = b.status()
    assert status.rendezvous_ok  # the store answered: not an outage
    assert status.answers_too_big == {T: 2}
    assert status.as_json()["answers_too_big"] == {T: 2}
    too_big = [r for r in caplog.records if r.levelno == logging.WARNING and "more than 1" in r.message]
    assert len(too_big) == 1  # logged once at WARNING, then only counted
    await a.stop()
    await b.stop()


def test_caps_scale_with_the_quotas() -> None:
    assert value_cap(16, 40.0, 120) == MIN_VALUE_CAP  # small quotas keep the old floor
    # A new version every 80 s (re-put in between), each living 600 s: 9 versions; 4 full sites.
    assert versions_per_instance(40.0, 120) == 9
    assert value_cap(1000, 40.0, 120) == 9 * 1000 * 4
    assert value_cap(1000, 40.0, 600) < value_cap(1000, 40.0, 120)  # a longer ttl: fewer versions


async def test_a_proxy_takes_the_scaled_caps() -> None:
    proxy = ProxyRendezvous("http://127.0.0.1:9")
    try:
        cap = value_cap(1000, 40.0, 120)
        apply_value_cap(proxy, cap, 40.0, 120)
        assert proxy.max_values == cap
        assert proxy.max_get_bytes >= cap * 1024
        # 4 full sites of 1,000 services put every 40 s is 6,000 values a minute: more than the old cap.
        assert proxy.listen_flood_per_minute >= 2 * 4000 * 60 // 40 > LISTEN_FLOOD_PER_MINUTE
        # ...plus the replay of every value a new listen gets first: a full key fits in the first minute.
        assert proxy.listen_flood_per_minute >= cap + 2 * 4000 * 60 // 40
    finally:
        await proxy.close()
