"""Sites over their quotas: what was refused, so that no site is ever cut silently.

The bridge refuses what does not fit a quota (z2z.core.security.ImportRules,
and the cap on services tracked on this link) and records it here per site.
The gateway reports it in status.json (`over_quota`), `z2z status`, the metric
``z2z_site_over_quota`` and one WARNING line per site.  An entry stays until
the quotas change (a reload) or the site fits again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Why a record was refused for its quota, and the setting to raise for it.
QUOTA_SETTINGS = {
    "quota-services": "max-services-per-site",
    "quota-bytes": "max-bytes-per-site",
    "quota-sites": "max-sites",
    "quota-total": "max-imported-services",
    "local-quota": "max-services-per-site",
}
# A flood of sites (each refused by max-sites) must not grow this table without bound.
MAX_OVERFLOW_ENTRIES = 256


@dataclass(slots=True)
class Overflow:
    """One site's refusals for one quota."""

    reason: str  # a QUOTA_SETTINGS key
    setting: str  # the setting that bounds it
    limit: int  # that setting's value when the last record was refused
    held: int  # what the site held then (services, or bytes for quota-bytes)
    refused: int = 0  # records refused since the site went over
    since: float = 0.0  # when the first was refused


class Overflows:
    """Per site, the quota it is over (the last one that refused it)."""

    def __init__(self) -> None:
        self._sites: dict[str, Overflow] = {}

    def refused(self, site: str, reason: str, held: int, limit: int, now: float) -> bool:
        """Count one refusal; True if the site was not over a quota before (log it once)."""
        entry = self._sites.get(site)
        new = entry is None
        if entry is None:
            if len(self._sites) >= MAX_OVERFLOW_ENTRIES:
                del self._sites[next(iter(self._sites))]  # the oldest goes; it stays counted in `rejected`
            entry = self._sites[site] = Overflow(reason, QUOTA_SETTINGS[reason], limit, held, 0, now)
        entry.reason, entry.setting, entry.limit, entry.held = reason, QUOTA_SETTINGS[reason], limit, held
        entry.refused += 1
        return new

    def fits(self, site: str) -> None:
        """`site` is within its quotas again (it shrank, or the quotas grew)."""
        self._sites.pop(site, None)

    def clear(self) -> None:
        self._sites.clear()

    def __contains__(self, site: object) -> bool:
        return site in self._sites

    def __len__(self) -> int:
        return len(self._sites)

    def get(self, site: str) -> Overflow | None:
        return self._sites.get(site)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """site -> {reason, setting, limit, held, refused, since}, for status.json."""
        return {site: asdict(entry) for site, entry in sorted(self._sites.items())}
