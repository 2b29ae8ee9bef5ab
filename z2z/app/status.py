"""What a running gateway reports about itself: one typed snapshot, read by every front.

`GatewayStatus` is taken once (`Gateway.status()`) and then only read:
status.json for `z2z status` (`StatusFile`), the systemd status line
(`systemd_summary`), the Prometheus collector (z2z.app.metrics) and the status
page (z2z.app.web).  So no front can disagree with another, and none reaches
into the bridge or the stage machine itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from z2z.app import state as state_store
from z2z.core.records import Service

STATUS_FILE = "status.json"


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One bridged service, as status.json lists it."""

    direction: str  # "export" or "import"
    site: str
    type: str
    instance: str
    host: str
    port: int
    addresses: list[str]

    @classmethod
    def of(cls, service: Service, direction: str, site: str) -> ServiceStatus:
        return cls(
            direction,
            site,
            service.type,
            service.instance,
            service.host,
            service.port,
            list(service.addresses),
        )


@dataclass(frozen=True, slots=True)
class LeaderStatus:
    """Another island leader known from the leaders registry."""

    site: str
    node: str
    contact: str
    structure: str


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """Everything `z2z status` shows; `as_json()` is the status.json document."""

    site: str
    network: str
    node: str
    pid: int
    time: float
    bridging: bool
    bridging_via: str
    rendezvous: str | None
    rendezvous_ok: bool
    rendezvous_failing: list[str]
    rendezvous_failures: dict[str, int]
    exported: list[str]
    imported: list[str]
    rejected: dict[str, int]
    flapping: list[str]
    private: bool
    site_key: str | None
    filtered: dict[str, int]
    types: dict[str, list[str]]
    services: list[ServiceStatus]
    stages: dict[str, Any] | None
    leaders: list[LeaderStatus]
    # type -> anti-entropy answers refused as too big (the store answers; the answer is over the cap)
    answers_too_big: dict[str, int] = field(default_factory=dict)
    # values a get returned that were already handled (not decoded again)
    values_skipped_known: int = 0
    # anti-entropy rounds per type: full gets made, and skipped because the site digests matched
    anti_entropy_full_gets: int = 0
    anti_entropy_skipped: int = 0
    # mDNS datagrams the kernel dropped on the link's sockets (python-zeroconf backend)
    link_kernel_drops: int = 0
    # the relay (z2z.app.relay): mode, endpoint, each import's route and why; None when off
    relay: dict[str, Any] | None = None
    # site -> the quota it is over and how many of its records were refused (z2z.core.bridge.quota)
    over_quota: dict[str, dict[str, Any]] = field(default_factory=dict)
    # counters for metrics; not part of status.json
    puts: int = 0
    flap_holds: int = 0

    def as_json(self) -> dict[str, Any]:
        """The status.json document: what `dataclasses.asdict` gives, built without its deep copy.

        asdict recurses into every field of every service (~70 ms for 2,000 services
        here); the snapshot is frozen and only read, so its lists are shared.
        """
        doc = {name: getattr(self, name) for name in _JSON_FIELDS}
        doc["services"] = [{name: getattr(s, name) for name in _SERVICE_FIELDS} for s in self.services]
        doc["leaders"] = [asdict(leader) for leader in self.leaders]
        return doc

    def systemd_summary(self) -> tuple[bool, str]:
        """(ready, one-line status): READY once bridging or following the island's leader."""
        st = self.stages
        ready = self.bridging or (st is not None and st["state"] == "follower")
        role = "bridging" if self.bridging else (st["state"] if st else "idle")
        stage = f"stage {st['stage']}, " if st else ""
        counts = f"{len(self.exported)} exported, {len(self.imported)} imported"
        if self.over_quota:
            counts += f", {len(self.over_quota)} site(s) over quota"
        return ready, f"{stage}{role} via {self.bridging_via}: {counts}"


_JSON_FIELDS = tuple(f.name for f in fields(GatewayStatus) if f.name not in ("puts", "flap_holds"))
_SERVICE_FIELDS = tuple(f.name for f in fields(ServiceStatus))
# Reporting (status.json, the systemd line) may take at most this share of one core:
# with thousands of services a snapshot costs tens of milliseconds, so it is then
# written less often than every second (the document's `time` says when).
REPORT_CPU_SHARE = 0.02


class ReportPacer:
    """When the next report is due: every `every` seconds, or less often if one report is costly."""

    def __init__(self, every: float = 1.0, share: float = REPORT_CPU_SHARE) -> None:
        self.every, self.share = every, share
        self.next_at = float("-inf")

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def done(self, now: float, cost: float) -> None:
        """A report started at `now` took `cost` seconds of this process's time."""
        self.next_at = now + max(self.every, cost / self.share) - self.every / 2


class StatusFile:
    """<state-dir>/status.json, rewritten only when something in it changed.

    The runtime offers a snapshot every second; an idle gateway's snapshot only
    differs in its `time`, so it is written when anything else changed, or
    `REFRESH` seconds after the last write (`time` says how recent it is;
    `z2z status` tells a running gateway by its pid).  No fsync: it is a
    snapshot, rewritten soon anyway, and on a Pi every fsync wears the SD card.
    """

    REFRESH = 60.0

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self._last: dict[str, Any] | None = None
        self._written_at = float("-inf")
        self.writes = 0

    def write(self, status: GatewayStatus, *, stopped: bool = False) -> bool:
        """Write `status` if it changed (or is due); True if written."""
        doc = status.as_json()
        doc["stopped"] = stopped
        same = {**doc, "time": None}
        if same == self._last and status.time - self._written_at < self.REFRESH:
            return False
        state_store.write_json(self.state_dir, STATUS_FILE, doc, durable=False)
        self._last, self._written_at = same, status.time
        self.writes += 1
        return True
