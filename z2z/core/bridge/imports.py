"""The import table: what this gateway imported, by (site, type, instance), with per-site totals.

The totals are what the per-site quotas (z2z.core.security.ImportRules) are checked
against, so they are kept as entries come and go instead of being summed on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

from z2z.core.records import Service


@dataclass(slots=True)
class Import:
    seq: int
    expires: float
    origin: Service | None  # None for a tombstone
    published: Service | None = None  # what is on the link, renamed
    size: int = 0  # bytes of the value's body, for the per-site quota
    digest: bytes = b""  # content digest of `origin` (z2z.core.wire.digest), for anti-entropy


class ImportTable(dict[tuple[str, str, str], Import]):
    """The imports by (site, type, instance), keeping per-site totals for the quotas."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict[str, list[int]] = {}  # site -> [entries, bytes]
        self.entries = 0  # all sites together, for the total import cap

    def _account(self, site: str, entries: int, size: int) -> None:
        use = self.usage.setdefault(site, [0, 0])
        use[0] += entries
        use[1] += size
        self.entries += entries
        if use[0] <= 0:
            del self.usage[site]

    def __setitem__(self, key: tuple[str, str, str], value: Import) -> None:
        old = self.get(key)
        if old is not None:
            self._account(key[0], -1, -old.size)
        super().__setitem__(key, value)
        self._account(key[0], 1, value.size)

    def __delitem__(self, key: tuple[str, str, str]) -> None:
        old = self[key]
        super().__delitem__(key)
        self._account(key[0], -1, -old.size)

    def pop(self, key: tuple[str, str, str], *default: Import | None) -> Import | None:  # type: ignore[override]
        if key in self:
            value = self[key]
            del self[key]
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def clear(self) -> None:
        super().clear()
        self.usage.clear()
        self.entries = 0
