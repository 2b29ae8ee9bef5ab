"""What the bridge asks the adapters to do: the actions it returns for every event."""

from __future__ import annotations

from dataclasses import dataclass

from z2z.core.records import Service
from z2z.core.security import KeyEvent


@dataclass(frozen=True, slots=True)
class Put:
    """Store a value in the rendezvous under `key` (a new version of one instance)."""

    key: bytes
    value_id: int
    data: bytes
    service_type: str
    instance: str
    why: str  # "new", "changed", "refresh" or "gone" (a tombstone)

    @property
    def gone(self) -> bool:
        return self.why == "gone"


@dataclass(frozen=True, slots=True)
class Publish:
    """Announce a proxied service on the link (also used to update its records)."""

    service: Service
    site: str


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Send goodbyes for a proxied service published earlier."""

    service_type: str
    instance: str
    site: str


@dataclass(frozen=True, slots=True)
class Reject:
    """Something was refused; the runtime logs it (rate-limited) and counts it."""

    reason: str
    detail: str
    # For a quota refusal: the site over its quota (z2z.core.bridge.quota), logged once per site.
    site: str | None = None
    went_over: bool = False  # this refusal put the site over (log it; later ones are only counted)


@dataclass(frozen=True, slots=True)
class Damped:
    """A service started (`held`) or stopped being held by flap damping.

    `site` is None for a local service (its exports are held) and the origin
    site for an import (what the link shows of it is held).
    """

    service_type: str
    instance: str
    held: bool
    changes: int  # changes swallowed while held
    site: str | None = None


@dataclass(frozen=True, slots=True)
class TrustNews:
    """A site key was learned (the runtime persists it) or changed (the runtime shouts)."""

    event: KeyEvent


Action = Put | Publish | Withdraw | Reject | TrustNews | Damped
