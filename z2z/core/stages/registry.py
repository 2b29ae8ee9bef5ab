"""The leaders of the network as one leader sees them, grouped by structure.

Pure bookkeeping for stages 2–4 (docs/stages.md, "Structures"): leader records
read from the rendezvous or the leaders' DHT, or heard from a leader on the
link; which structures exist and how many live leaders each has; which one a
leader should be in; whom to bootstrap to.
"""

from __future__ import annotations

import heapq

from z2z.core.wire.gateways import Announcement, LeaderRecord

_PURGE_EVERY = 5.0


class Registry:
    """Live leader records (newest per node) and an index of structure → members."""

    def __init__(self, me: str, network: str, max_skew: float) -> None:
        self.me = me
        self.network = network
        self.max_skew = max_skew
        self.records: dict[str, LeaderRecord] = {}
        self.members: dict[str, set[str]] = {}  # structure id ("" = none yet) → nodes
        self._next_purge = 0.0

    def clear(self) -> None:
        self.records.clear()
        self.members.clear()

    def add(self, rec: LeaderRecord, now: float) -> bool:
        """Take a record if it is newer than what we hold; True if it moved a leader."""
        if rec.node == self.me or rec.network != self.network:
            return False
        if rec.expires() + self.max_skew < now or rec.ts > now + self.max_skew:
            return False
        old = self.records.get(rec.node)
        if old is not None and rec.ts <= old.ts:
            return False
        self.records[rec.node] = rec
        if old is not None:
            if old.structure == rec.structure:
                return False
            self._unindex(old)
        self.members.setdefault(rec.structure, set()).add(rec.node)
        return True

    def hear(self, info: Announcement, ttl: int, now: float) -> bool:
        """A leader heard on our link counts as a record (our clock, our ttl)."""
        rec = LeaderRecord(
            info.network, info.site, info.node, info.contact, info.structure, info.size, now, ttl
        )
        return bool(info.contact) and self.add(rec, now)

    def purge(self, now: float) -> None:
        """Drop expired records (at most every few seconds: it walks them all)."""
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_EVERY
        for node, rec in list(self.records.items()):
            if rec.expires() + self.max_skew < now:
                del self.records[node]
                self._unindex(rec)

    def _unindex(self, rec: LeaderRecord) -> None:
        group = self.members.get(rec.structure)
        if group is not None:
            group.discard(rec.node)
            if not group:
                del self.members[rec.structure]

    # -- questions -----------------------------------------------------------

    def leaders(self) -> int:
        """Other live leaders known."""
        return len(self.records)

    def count(self, structure: str, mine: str = "") -> int:
        """Live leaders in `structure`, counting ourselves if it is `mine`."""
        return len(self.members.get(structure, ())) + (1 if structure and structure == mine else 0)

    def best(self, mine: str = "") -> str:
        """The structure every leader should end up in: most members, ties to the higher id ("" if none)."""
        best, best_key = "", (0, "")
        for s in [*self.members, mine]:
            if s:
                k = (self.count(s, mine), s)
                if k > best_key:
                    best, best_key = s, k
        return best

    def founder(self) -> str:
        """Who founds the first structure: the highest node id among unstructured leaders and us."""
        return max([self.me, *self.members.get("", ())])

    def contacts(self, structure: str, limit: int) -> tuple[str, ...]:
        """Up to `limit` contacts of `structure`'s members: its founder first, then the freshest."""
        nodes = self.members.get(structure, ())
        recs = [self.records[n] for n in nodes if self.records[n].contact]
        chosen = heapq.nsmallest(limit, recs, key=lambda r: (r.node != structure, -r.ts, r.node))
        return tuple(r.contact for r in chosen)

    def contact_of(self, node: str) -> str:
        rec = self.records.get(node)
        return rec.contact if rec is not None else ""
