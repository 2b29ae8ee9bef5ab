"""What the stage machine asks the runtime to do: small immutable actions.

`StageMachine.handle` returns them in the order they must be carried out.
None of them needs an answer, but several produce later events: `ReadLeaders`
→ `LeadersRead`, `StartDht`/`Bootstrap`/`JoinStructure` → `DhtStatus`.
"""

from __future__ import annotations

from dataclasses import dataclass

from z2z.core.wire.gateways import Announcement, LeaderRecord, Store


@dataclass(frozen=True, slots=True)
class Announce:
    """(Re)publish our `_z2z._udp` service on the link with TXT `to_txt(info)`.

    Made only when what we announce changed (or every `announce_interval` while
    an older gateway that takes no heartbeats is live): the mDNS stack sends its
    RFC 6762 announcement burst, then the link is quiet.  Also send `info` as a
    heartbeat to `to` ("host:port" each), so the island learns of the change at once.
    """

    info: Announcement
    to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Send `info` by unicast UDP to each heartbeat address in `to` (liveness, no multicast)."""

    info: Announcement
    to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Goodbye:
    """Withdraw our `_z2z._udp` service (mDNS goodbye): peers take over at once.

    With heartbeats, also send `info` as a goodbye datagram to `to`: the same
    hand-over if the multicast goodbye is lost or the mDNS stack is slow with it.
    """

    info: Announcement | None = None
    to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BecomeLeader:
    """Start bridging (only the island leader exports and imports)."""


@dataclass(frozen=True, slots=True)
class StepDown:
    """Stop bridging: withdraw imports and stop exporting; another gateway leads now."""

    reason: str  # "higher-leader" or "stopping"


@dataclass(frozen=True, slots=True)
class Register:
    """Put our leader record under `leaders_key(network)` in `store` (a fresh value id each time)."""

    record: LeaderRecord
    store: Store


@dataclass(frozen=True, slots=True)
class ReadLeaders:
    """Get the `leaders` key from `store` and feed back `LeadersRead` (listening there is welcome too)."""

    store: Store


@dataclass(frozen=True, slots=True)
class StartDht:
    """Start the embedded OpenDHT node on `network_id` and bootstrap to `bootstrap` ("host:port").

    An empty `bootstrap` founds a structure: the node waits to be joined.
    """

    network_id: int
    bootstrap: tuple[str, ...]
    structure: str


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """Bootstrap the running node to more contacts (no change of structure, nothing republished)."""

    contacts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JoinStructure:
    """Merge into structure `structure`: bootstrap to `contacts`, then re-put our records.

    OpenDHT merges routing tables by itself once nodes meet; the re-put moves
    our values to the nodes now responsible for their keys.
    """

    structure: str
    contacts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StopDht:
    """Shut the embedded node down (we no longer lead)."""


@dataclass(frozen=True, slots=True)
class BridgeVia:
    """Move bridging to `store`: re-put exports there, listen and anti-entropy there."""

    store: Store


Action = (
    Announce
    | Heartbeat
    | Goodbye
    | BecomeLeader
    | StepDown
    | Register
    | ReadLeaders
    | StartDht
    | Bootstrap
    | JoinStructure
    | StopDht
    | BridgeVia
)
