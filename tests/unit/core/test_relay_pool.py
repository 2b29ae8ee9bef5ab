"""How many warm relay channels a site's pool holds (z2z.core.relay.pool): demand, bounded."""

from __future__ import annotations

import pytest

from z2z.core.relay.pool import HORIZON, SPARES_HIGH, SPARES_LOW, SparePolicy


def test_an_idle_site_keeps_the_floor() -> None:
    assert SparePolicy().target(0.0) == SPARES_LOW
    assert SparePolicy(low=0, high=4).target(100.0) == 0


def test_the_pool_follows_the_connects_of_the_last_horizon() -> None:
    policy = SparePolicy(low=2, high=8, horizon=2.0)
    for i in range(5):
        policy.taken(10.0 + i * 0.1)
    assert policy.target(10.5) == 5  # five clients in the last two seconds: five ready for the next five
    assert policy.target(12.05) == 4  # the first one (10.0) left the horizon
    assert policy.target(12.45) == 2  # all gone: back to the floor


def test_the_pool_never_grows_past_its_ceiling_and_stays_bounded() -> None:
    policy = SparePolicy()
    for i in range(10_000):  # back-to-back connects, far more than the ceiling
        policy.taken(i * 1e-4)
    assert policy.target(1.0) == SPARES_HIGH
    assert len(policy._taken) <= SPARES_HIGH  # the bookkeeping is bounded too
    assert policy.target(1.0 + HORIZON + 0.01) == SPARES_LOW


def test_a_burst_after_a_quiet_spell_counts_only_the_burst() -> None:
    policy = SparePolicy(low=1, high=8, horizon=1.0)
    policy.taken(0.0)
    for t in (50.0, 50.01, 50.02):
        policy.taken(t)
    assert policy.target(50.03) == 3


@pytest.mark.parametrize(("low", "high", "horizon"), [(3, 2, 1.0), (-1, 2, 1.0), (1, 2, 0.0)])
def test_nonsense_bounds_are_refused(low: int, high: int, horizon: float) -> None:
    with pytest.raises(ValueError, match="spares"):
        SparePolicy(low=low, high=high, horizon=horizon)
