"""The island as one gateway sees it: the live peers on its link and who leads them.

Pure bookkeeping for the election (docs/stages.md, "Election"): which peers are
alive (heard within `expiry`), which announcements are stale, and who is the
highest live leader.  Decisions are the machine's; this only answers questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from z2z.core.wire.gateways import Announcement, State

LOST_MEMORY = 64  # heartbeat addresses of peers lost without a goodbye, probed for a while
HINT_MEMORY = 8  # contacts of the island's structure remembered from leader announcements
_LAST_SEQ = 2**63  # above any valid seq: nothing of a departed incarnation is heard again


class Heard(IntEnum):
    """What an announcement changed, so the machine can skip the election when nothing did."""

    STALE = 0  # older than what we have, our own echo, or another network
    REFRESH = 1  # same peer, same facts, newer seq: only liveness moved
    CHANGED = 2  # state, rank, leader or structure changed
    NEW = 3  # a peer we did not know (or a new incarnation of one)


@dataclass(slots=True)
class Peer:
    info: Announcement
    first_heard: float
    last_heard: float


class Island:
    """Live peers of one island, newest announcement of each, and the replay guard."""

    def __init__(self, me: str, network: str, expiry: float, memory: int = 4096) -> None:
        self.me = me
        self.network = network
        self.expiry = expiry
        self.memory = memory
        self.peers: dict[str, Peer] = {}
        # Highest (incarnation, seq) ever accepted per node, kept after the peer
        # died or said goodbye: a replay of any older packet is refused forever.
        self._seen: dict[str, tuple[int, int]] = {}
        # Structure the last heard leader announced, and the contacts its leaders
        # announced lately (newest first): how a new leader rejoins the island's
        # structure after a takeover, even if some of those contacts died with it.
        self.hint_structure = ""
        self._hint: dict[str, None] = {}
        self._last_contacts: tuple[str, ...] = ()
        # Peers that went silent without a goodbye: node → (heartbeat address, when lost).
        # Heartbeats to them now and then find the other half of a healed partition,
        # which the quiet link would never announce again.
        self.lost: dict[str, tuple[str, float]] = {}

    def hear(self, info: Announcement, now: float) -> Heard:
        if info.node == self.me or info.network != self.network:
            return Heard.STALE
        if info.version <= self._seen.get(info.node, (-1, -1)):
            return Heard.STALE
        self._remember(info.node, info.version)
        self.lost.pop(info.node, None)
        if info.state.leading:
            self._learn_hint(info)
        peer = self.peers.get(info.node)
        if peer is None or peer.info.incarnation != info.incarnation:
            self.peers[info.node] = Peer(info, now, now)
            return Heard.NEW
        old, peer.info, peer.last_heard = peer.info, info, now
        same = (old.state, old.rank, old.leader, old.structure) == (
            info.state,
            info.rank,
            info.leader,
            info.structure,
        )
        return Heard.REFRESH if same else Heard.CHANGED

    @property
    def hint_contacts(self) -> tuple[str, ...]:
        return tuple(self._hint)

    def _learn_hint(self, info: Announcement) -> None:
        if info.structure != self.hint_structure:
            self.hint_structure, self._hint = info.structure, {}
        elif info.contacts == self._last_contacts:
            return  # the usual case: a periodic announcement, same contacts
        self._last_contacts = info.contacts
        for c in reversed(info.contacts):
            self._hint.pop(c, None)
            self._hint = {c: None, **self._hint}
        while len(self._hint) > HINT_MEMORY:
            self._hint.popitem()

    def goodbye(self, node: str, incarnation: int) -> bool:
        """Drop `node` if the goodbye is for its current (or a newer) incarnation."""
        if node == self.me or incarnation < self._seen.get(node, (-1, -1))[0]:
            return False
        self._remember(node, (incarnation, _LAST_SEQ))
        self.lost.pop(node, None)  # it left on purpose: nothing to find again
        return self.peers.pop(node, None) is not None

    def expire(self, now: float) -> bool:
        """Forget peers not heard for `expiry` seconds; True if any went."""
        dead = [n for n, p in self.peers.items() if p.last_heard + self.expiry <= now]
        for n in dead:
            hb = self.peers.pop(n).info.heartbeat
            if hb:
                self.lost[n] = (hb, now)
        while len(self.lost) > LOST_MEMORY:
            del self.lost[next(iter(self.lost))]
        return bool(dead)

    def forget_lost(self, before: float) -> None:
        """Stop probing peers lost before `before`."""
        for n in [n for n, (_, t) in self.lost.items() if t < before]:
            del self.lost[n]

    def heartbeat_targets(self) -> tuple[str, ...]:
        """Heartbeat addresses of the live peers that take heartbeats."""
        return tuple(p.info.heartbeat for p in self.peers.values() if p.info.heartbeat)

    def has_legacy_peer(self) -> bool:
        """A live peer of an older version that takes no heartbeats (it needs multicast every interval)."""
        return any(not p.info.heartbeat for p in self.peers.values())

    def next_expiry(self) -> float:
        if not self.peers:
            return float("inf")
        return min(p.last_heard for p in self.peers.values()) + self.expiry

    def leader(self) -> Peer | None:
        """The highest live peer that claims to lead."""
        best: Peer | None = None
        for p in self.peers.values():
            if p.info.state.leading and (best is None or p.info.key > best.info.key):
                best = p
        return best

    def above(self, key: tuple[int, str]) -> list[Peer]:
        """Live peers that would win an election against `key`."""
        return [p for p in self.peers.values() if p.info.key > key and p.info.state is not State.STOPPED]

    def _remember(self, node: str, version: tuple[int, int]) -> None:
        self._seen[node] = version
        if len(self._seen) > self.memory:  # bounded: forget the oldest nodes not alive now
            for n in list(self._seen)[: self.memory // 2]:
                if n not in self.peers:
                    del self._seen[n]
