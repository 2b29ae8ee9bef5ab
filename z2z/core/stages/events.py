"""What the runtime tells the stage machine: small immutable events.

Each is fed with `StageMachine.handle(event, now)`.  The runtime makes them from
what its adapters see: the link backend (peer announcements and goodbyes of
`_z2z._udp`), the rendezvous (up/down, reads of the `leaders` key), the
embedded OpenDHT node (its peers), and the clock (`Tick`).
"""

from __future__ import annotations

from dataclasses import dataclass

from z2z.core.wire.gateways import Announcement, LeaderRecord, Store


@dataclass(frozen=True, slots=True)
class Started:
    """The gateway starts: begin announcing and listening for a leader."""


@dataclass(frozen=True, slots=True)
class Stopping:
    """A clean stop: hand over at once (goodbye) instead of letting peers time out."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; feed one at `StageMachine.next_deadline()` (or at least every 0.25 s)."""


@dataclass(frozen=True, slots=True)
class PeerAnnounced:
    """A `_z2z._udp` announcement of another gateway was heard on the link (TXT parsed by `from_txt`)."""

    info: Announcement


@dataclass(frozen=True, slots=True)
class PeerGoodbye:
    """A peer's `_z2z._udp` service left (mDNS goodbye).

    The instance name carries node id and incarnation (`instance_name`), so a
    goodbye of an earlier incarnation cannot remove a restarted peer.
    """

    node: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class RendezvousUp:
    """The outside rendezvous answers (again)."""


@dataclass(frozen=True, slots=True)
class RendezvousDown:
    """The outside rendezvous stopped answering (puts/gets fail, listen streams broke)."""


@dataclass(frozen=True, slots=True)
class LeadersRead:
    """Leader records read from `store`: a full `get` or values pushed by a `listen`.

    Records only add knowledge (each expires on its own `ts + ttl`), so a
    partial answer is as good as a full one.  Undecodable values are dropped
    by the runtime (`decode_record` raises) before they get here.
    """

    records: tuple[LeaderRecord, ...]
    store: Store


@dataclass(frozen=True, slots=True)
class DhtStatus:
    """The embedded leaders' DHT node reports its good peers (e.g. every few seconds).

    `contacts` are a few of those peers' "host:port", announced on the link so a
    follower can rejoin the structure after a takeover.
    """

    peers: int
    contacts: tuple[str, ...] = ()


Event = (
    Started
    | Stopping
    | Tick
    | PeerAnnounced
    | PeerGoodbye
    | RendezvousUp
    | RendezvousDown
    | LeadersRead
    | DhtStatus
)

TICK = Tick()


def instance_name(node: str, incarnation: int) -> str:
    """The `_z2z._udp` instance name of a gateway: unique per node and incarnation."""
    return f"z2z-{node}-{incarnation}"
