"""Anti-entropy by digest: site summaries put by exporters, compared by importers before a full get.

`Summaries` keeps this site's summary of each exported type in the store (one
small value per type under its summary key, z2z.core.wire.digest): a new one
when the set of exports changes, the same bytes re-put every `refresh` seconds
otherwise (a refresh in place).  `DigestGate` decides, for each type and
anti-entropy round, whether the full `get` of the type key is needed: only when
a site's summary differs from what this gateway holds from it (and did not
already differ the same way after the last full get), when an import is close
to running out of TTL (its next version may have been missed), when a site this
gateway imports from has no summary (an older z2z, or one that stopped), and on
the first round after start or a change of store.  docs/protocol.md,
"Anti-entropy by digest".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from z2z.core.bridge import Bridge, Put
from z2z.core.security import Codec
from z2z.core.wire import digest as digests
from z2z.core.wire.digest import Summary

log = logging.getLogger(__name__)

EMPTY = digests.set_digest(())
# Seconds between two new summaries of one type: a burst of changes makes one summary per
# gap, not one per second (each new one is a new value under the key for 10 minutes).
NEW_GAP = 10.0


class Summaries:
    """This site's summaries in the store: new on change, re-put unchanged every `refresh` s."""

    def __init__(self, bridge: Bridge, codec: Codec, site: str) -> None:
        self.bridge = bridge
        self.codec = codec
        self.site = site
        # type -> (digest, the put as made, when last put)
        self._last: dict[str, tuple[str, Put, float]] = {}
        self._made: dict[str, float] = {}  # type -> when its current summary was made

    def reset(self) -> None:
        """Put every summary again (another store, or bridging starts again)."""
        self._last.clear()
        self._made.clear()

    def due(self, now: float, refresh: float) -> list[Put]:
        out: list[Put] = []
        for service_type in sorted(self.bridge.exported_types() | set(self._last)):
            count, digest = self.bridge.export_digest(service_type)
            last = self._last.get(service_type)
            if last is not None and (last[0] == digest or now - self._made.get(service_type, 0.0) < NEW_GAP):
                if now - last[2] >= refresh:
                    self._last[service_type] = (last[0], last[1], now)
                    out.append(last[1])
                continue
            name = digests.summary_key_name(service_type)
            seq = self.bridge.next_seq(now)
            summary = Summary(self.bridge.settings.network, self.site, service_type, seq, count, digest)
            key = self.bridge.key_for(name)
            put = Put(
                key=key,
                value_id=self.codec.value_id(self.site, name, "", seq),
                data=self.codec.seal(digests.encode(summary), key),
                service_type=name,
                instance="",
                why="summary",
            )
            self._last[service_type] = (digest, put, now)
            self._made[service_type] = now
            out.append(put)
        return out


class DigestGate:
    """Per type: is a full get needed this round?  Remembers what the last full get reconciled."""

    def __init__(self) -> None:
        # type -> site -> (the site's summary digest, what we held of it) right after a full get
        self._reconciled: dict[str, dict[str, tuple[str, tuple[int, str]]]] = {}
        self.full_gets = 0
        self.skipped = 0

    def forget(self) -> None:
        self._reconciled.clear()

    def why_full(
        self,
        service_type: str,
        summaries: Mapping[str, Summary],
        holdings: Mapping[str, tuple[int, str]],
        next_expiry: float | None,
        deadline: float,
    ) -> str | None:
        """Why this round needs the full get of `service_type` (None: the digests say all is held).

        `summaries` and `holdings` are per other site; `next_expiry` is when the
        first import of the type runs out of TTL, `deadline` how far ahead that
        counts (about two anti-entropy periods from now).
        """
        reconciled = self._reconciled.get(service_type)
        if reconciled is None:
            return "first round"
        if next_expiry is not None and next_expiry < deadline:
            return "an import nears the end of its TTL"
        for site in holdings:
            if site not in summaries:
                return f"no summary from {site}"
        for site, summary in summaries.items():
            held = holdings.get(site, EMPTY)
            if summary.digest == held[1] or reconciled.get(site) == (summary.digest, held):
                continue
            return f"{site}'s services changed ({summary.count} there, {held[0]} here)"
        return None

    def reconciled(
        self, service_type: str, summaries: Mapping[str, Summary], holdings: Mapping[str, tuple[int, str]]
    ) -> None:
        """A full get of `service_type` just succeeded: remember how the digests compared."""
        self._reconciled[service_type] = {
            site: (s.digest, holdings.get(site, EMPTY)) for site, s in summaries.items()
        }
