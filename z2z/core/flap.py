"""Flap damping for local services, after BGP route flap damping (RFC 2439).

A device that announces, withdraws or rewrites its records every 100 ms would
otherwise turn into ten DHT puts a second and ten re-announcements a second on
every other campus.  Each change of a service adds `penalty` to a figure of
merit that halves every `half_life` seconds.  Above `suppress` the service is
*held*: other sites keep seeing the last state that was exported, and the
local changes are only remembered.  Once the figure decays below `reuse` the
hold ends and the service's current state (present, changed or gone) is
exported at once.  The figure never exceeds `ceiling`, which bounds how long a
service stays held after it settles: ``half_life * log2(ceiling / reuse)``.

Pure: no clock, no I/O; `now` is passed in like everywhere in the core.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Merit:
    value: float
    at: float
    held: bool = False


class FlapDamper:
    """Per-key figure of merit; `half_life <= 0` turns damping off."""

    def __init__(
        self,
        half_life: float,
        *,
        penalty: float = 1.0,
        suppress: float = 4.0,
        reuse: float = 1.0,
        ceiling: float = 8.0,
    ) -> None:
        if not 0 < reuse < suppress <= ceiling:
            raise ValueError("flap damping needs 0 < reuse < suppress <= ceiling")
        self.half_life = half_life
        self.penalty = penalty
        self.suppress = suppress
        self.reuse = reuse
        self.ceiling = ceiling
        self._merits: dict[Hashable, _Merit] = {}

    @property
    def enabled(self) -> bool:
        return self.half_life > 0

    def max_hold(self) -> float:
        """Longest hold after a service settles (seconds)."""
        return self.half_life * math.log2(self.ceiling / self.reuse) if self.enabled else 0.0

    def __contains__(self, key: Hashable) -> bool:
        """True if `key` changed recently enough to be remembered."""
        return key in self._merits

    def _decayed(self, merit: _Merit, now: float) -> float:
        if not self.enabled:
            return 0.0  # damping was turned off (a reload): every hold ends
        elapsed = max(0.0, now - merit.at)
        return merit.value * 0.5 ** (elapsed / self.half_life)

    def flap(self, key: Hashable, now: float) -> bool:
        """Count one change of `key`; True if the key is (now) held.

        The return value only turns True on the change that crosses `suppress`;
        callers notice a fresh hold by comparing with `held` before the call.
        """
        if not self.enabled:
            return False
        merit = self._merits.get(key)
        if merit is None:
            merit = self._merits[key] = _Merit(0.0, now)
        merit.value = min(self.ceiling, self._decayed(merit, now) + self.penalty)
        merit.at = now
        if merit.value > self.suppress:
            merit.held = True
        return merit.held

    def held(self, key: Hashable, now: float) -> bool:
        """True while `key` is held (its figure has not yet decayed below `reuse`)."""
        merit = self._merits.get(key)
        if merit is None or not merit.held:
            return False
        return self._decayed(merit, now) >= self.reuse

    def held_keys(self) -> list[Hashable]:
        return [k for k, m in self._merits.items() if m.held]

    def release(self, now: float) -> list[Hashable]:
        """Keys whose hold is over (their current state should be exported now).

        Also forgets keys whose figure has decayed to nothing, so memory stays
        proportional to what changed recently.
        """
        released: list[Hashable] = []
        for key, merit in list(self._merits.items()):
            value = self._decayed(merit, now)
            if merit.held and value < self.reuse:
                merit.held = False
                released.append(key)
            if not merit.held and value < self.penalty / 16:
                del self._merits[key]
        return released

    def __len__(self) -> int:
        return len(self._merits)
