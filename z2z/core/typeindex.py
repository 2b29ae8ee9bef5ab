"""Which service types each site exports: a small directory in the DHT.

Values are stored per service type (docs/protocol.md), so an importer must know
a type's name to read it.  ``import-types = ["*"]`` means "whatever the other
sites export", including types never seen on this link; this index is how an
importer learns them.  Each bridging gateway keeps one entry, under the key of
DNS-SD's own type enumeration name (`INDEX_TYPE`), listing the types it
exports; importers with ``"*"`` listen to that key and start listening to every
new type it names (minus their ``deny-types``).

An entry is a small strict JSON document (`encode`/`decode`), wrapped like any
z2z value by the network's codec (sealed and signed in a private network).  It
carries the same freshness fields as a service value: re-put every `refresh`
seconds while it lists something, dropped by readers after ``ts + ttl + skew``.
Pure: no I/O, no clock; the runtime passes `now` in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from z2z.core.errors import Z2zError
from z2z.core.records import RecordError, normalize_type
from z2z.core.wire.envelope import valid_site

INDEX_TYPE = "_services._dns-sd._udp"
FORMAT = 1
MAX_TYPES = 64  # per site entry
MAX_BYTES = 4096
MAX_KNOWN = 256  # types an importer learns from all entries together
_FIELDS = {"z2z", "idx", "net", "site", "ts", "ttl", "types"}


class TypeIndexError(Z2zError, ValueError):
    """A type-index value z2z refuses."""

    default_reason = "bad-type-index"


@dataclass(frozen=True, slots=True)
class SiteTypes:
    network: str
    site: str
    ts: float
    ttl: int
    types: tuple[str, ...]


def encode(entry: SiteTypes) -> bytes:
    doc = {
        "z2z": FORMAT,
        "idx": 1,
        "net": entry.network,
        "site": entry.site,
        "ts": round(entry.ts, 3),
        "ttl": entry.ttl,
        "types": sorted(entry.types),
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def decode(data: bytes) -> SiteTypes:
    """Strict and bounded: exactly the known fields, valid names, at most `MAX_TYPES` types."""
    if len(data) > MAX_BYTES:
        raise TypeIndexError("too large")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: "[[[[…"
        raise TypeIndexError("not JSON") from None
    if not isinstance(doc, dict) or set(doc) != _FIELDS or doc["z2z"] != FORMAT or doc["idx"] != 1:
        raise TypeIndexError("not a z2z type index entry")
    net, site, ts, ttl, types = doc["net"], doc["site"], doc["ts"], doc["ttl"], doc["types"]
    if not (isinstance(net, str) and isinstance(site, str) and valid_site(site)):
        raise TypeIndexError("bad network or site")
    if (
        isinstance(ts, bool)
        or not isinstance(ts, int | float)
        or isinstance(ttl, bool)
        or not isinstance(ttl, int)
        or not 0 < ttl <= 86400
    ):
        raise TypeIndexError("bad ts or ttl")
    if not isinstance(types, list) or len(types) > MAX_TYPES or not all(isinstance(t, str) for t in types):
        raise TypeIndexError("bad types")
    try:
        clean = tuple(dict.fromkeys(normalize_type(t) for t in types))
    except RecordError as exc:
        raise TypeIndexError(str(exc)) from None
    return SiteTypes(net, site, float(ts), ttl, clean)


class TypeIndex:
    """This gateway's entry (when to re-put it) and what other sites' entries say."""

    def __init__(self, network: str, site: str, ttl: int, refresh: float, max_skew: float) -> None:
        self.network, self.site = network, site
        self.ttl, self.refresh, self.max_skew = ttl, refresh, max_skew
        self._mine: tuple[str, ...] = ()
        self._last = float("-inf")
        self._entries: dict[str, SiteTypes] = {}  # site -> newest live entry

    def due(self, types: Iterable[str], now: float) -> bytes | None:
        """Our entry's body when it must be (re-)put now, else None.

        Put when the exported types change (an empty list too, once, so that
        importers stop expecting them) and every `refresh` while the list is not empty.
        """
        mine = tuple(sorted(set(types)))[:MAX_TYPES]
        changed = mine != self._mine
        if not changed and (not mine or now - self._last < self.refresh):
            return None
        self._mine, self._last = mine, now
        return encode(SiteTypes(self.network, self.site, now, self.ttl, mine))

    def receive(self, data: bytes, now: float) -> list[str]:
        """Take in an entry (body already opened by the codec); return types new to us."""
        entry = decode(data)
        if entry.network != self.network or entry.site == self.site:
            return []
        if entry.ts > now + self.max_skew or entry.ts + entry.ttl + self.max_skew < now:
            return []
        known = self.known(now)
        old = self._entries.get(entry.site)
        if old is not None and old.ts >= entry.ts:
            return []
        self._entries[entry.site] = entry
        room = MAX_KNOWN - len(known)
        return [t for t in entry.types if t not in known][: max(0, room)]

    def known(self, now: float) -> set[str]:
        """Types some live entry lists."""
        for site, e in list(self._entries.items()):
            if e.ts + e.ttl + self.max_skew < now:
                del self._entries[site]
        return {t for e in self._entries.values() for t in e.types}
