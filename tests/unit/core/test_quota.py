"""Quotas sized for big campuses, and a site over its quota is reported, never cut silently."""

from __future__ import annotations

from dataclasses import replace

from z2z.core.bridge import Bridge, BridgeSettings, Publish, Put, Reject
from z2z.core.records import Service
from z2z.core.security import Codec, ImportRules, SiteLimits

T = "_ipp._tcp"
NOW = 1_800_000_000.0
# A realistic IPP printer: its TXT is what CUPS/Avahi AirPrint guides publish (~400 bytes).
IPP_TXT = (
    b"txtvers=1",
    b"qtotal=1",
    b"rp=ipp/print",
    b"ty=HP Color LaserJet MFP M479fdw",
    b"adminurl=https://printer.example.edu/hp/device/info_config_AirPrint.html",
    b"note=Building 12, room 2.14",
    b"priority=10",
    b"product=(HP Color LaserJet MFP M479fdw)",
    b"pdl=application/octet-stream,application/pdf,application/postscript,image/jpeg,image/urf",
    b"Color=T",
    b"Duplex=T",
    b"URF=CP1,IS1-5-7,MT1-2-3-5-12,OB10,PQ4,RS300-600,V1.4,W8,DM1",
    b"UUID=564e4333-3630-3036-3230-3865a1b2c3d4",
    b"TLS=1.2",
    b"mopria-certified=2.0",
    b"kind=document,envelope,photo",
)
PRINTER = Service(T, "Printer", "printer", 631, IPP_TXT, ("10.1.0.9",))


def bridge(site: str, **kw: object) -> Bridge:
    settings = BridgeSettings(site=site, network="z2z", node="0123456789abcdef", types=(T,), **kw)  # type: ignore[arg-type]
    return Bridge(settings, codec=Codec("z2z"))


def deliver(actions: list, to: Bridge, now: float = NOW) -> list:
    out: list = []
    for p in actions:
        if isinstance(p, Put):
            out += to.remote_value(p.service_type, p.data, now)
    return out


def printers(site: str, n: int) -> list[Service]:
    return [
        replace(
            PRINTER,
            instance=f"{site} Printer {i}",
            host=f"p{i}",
            addresses=(f"10.1.{i // 250}.{i % 250 + 1}",),
        )
        for i in range(n)
    ]


def test_defaults_take_1000_services_from_one_site_and_5000_from_20_sites() -> None:
    """The default quotas (ImportRules()) fit a big campus without any setting raised."""
    b = bridge("importer")
    one = bridge("big-campus")
    out = [a for s in printers("big", 1000) for a in deliver(one.local_up(s, NOW), b)]
    assert not [a for a in out if isinstance(a, Reject)], [a for a in out if isinstance(a, Reject)][:3]
    assert len([a for a in out if isinstance(a, Publish)]) == 1000
    assert len(one.exports()) == 1000  # the exporting side's link cap fits it too
    for k in range(19):
        site = bridge(f"site-{k:02d}")
        for s in printers(f"s{k}", 200):
            deliver(site.local_up(s, NOW), b)
    assert len(b.imports()) == 1000 + 19 * 200
    assert not b.stats.rejected and not b.overflows.snapshot()


def test_a_site_over_its_service_quota_is_reported_once_and_counted() -> None:
    b = bridge("campus-b", rules=ImportRules(default=SiteLimits(max_services=3)))
    a, c = bridge("campus-a"), bridge("campus-c")
    rejects: list[Reject] = []
    for s in printers("a", 6):
        rejects += [x for x in deliver(a.local_up(s, NOW), b, NOW + 1) if isinstance(x, Reject)]
    assert [r.reason for r in rejects] == ["quota-services"] * 3
    assert [r.went_over for r in rejects] == [True, False, False]  # one log line, the rest counted
    assert {r.site for r in rejects} == {"campus-a"}
    assert "3 services imported from campus-a, max-services-per-site = 3" in rejects[0].detail
    over = b.overflows.snapshot()
    assert over == {
        "campus-a": {
            "reason": "quota-services",
            "setting": "max-services-per-site",
            "limit": 3,
            "held": 3,
            "refused": 3,
            "since": NOW + 1,
        }
    }
    deliver(c.local_up(PRINTER, NOW), b)  # another site is not marked
    assert set(b.overflows.snapshot()) == {"campus-a"}
    # a withdrawal frees a slot; the next new service fits, and the mark goes
    deliver(a.local_down(T, "a Printer 0", NOW + 2), b, NOW + 2)
    b.tick(NOW + 2 + 200)
    assert [
        x
        for x in deliver(a.local_up(replace(PRINTER, instance="late"), NOW + 203), b, NOW + 203)
        if isinstance(x, Publish)
    ]
    assert not b.overflows.snapshot()


def test_total_import_cap_and_local_link_cap_are_reported() -> None:
    b = bridge("campus-b", rules=ImportRules(max_imports=4))
    for k in range(3):
        site = bridge(f"site-{k}")
        for s in printers(f"s{k}", 2):
            deliver(site.local_up(s, NOW), b)
    assert len(b.imports()) == 4 and b.stats.rejected["quota-total"] == 2
    over = b.overflows.snapshot()
    assert list(over) == ["site-2"] and over["site-2"]["setting"] == "max-imported-services"
    # this link: a device announcing more names than the quota marks the own site
    local = bridge("campus-l", rules=ImportRules(default=SiteLimits(max_services=5)))
    acts = [a for s in printers("l", 8) for a in local.local_up(s, NOW)]
    rejects = [a for a in acts if isinstance(a, Reject)]
    assert [r.reason for r in rejects] == ["local-quota"] * 3 and rejects[0].went_over
    assert local.overflows.snapshot()["campus-l"]["held"] == 5


def test_byte_quota_is_reported_and_a_reload_with_new_quotas_clears_the_mark() -> None:
    b = bridge("campus-b", rules=ImportRules(default=SiteLimits(max_bytes=2048)))
    a = bridge("campus-a")
    for s in printers("a", 6):
        deliver(a.local_up(s, NOW), b)
    over = b.overflows.snapshot()["campus-a"]
    assert over["reason"] == "quota-bytes" and over["held"] > over["limit"] == 2048
    b.reconfigure(replace(b.settings, rules=ImportRules()), NOW + 1)
    assert not b.overflows.snapshot()
