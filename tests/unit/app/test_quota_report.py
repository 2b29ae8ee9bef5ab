"""A site over its quota shows in status.json, `z2z status`, the metrics, the status page and one log line."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from support.helpers import PRINTER, T, until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app.cli import main
from z2z.app.config import build
from z2z.app.gateway import Gateway
from z2z.app.metrics import Metrics
from z2z.app.web import render_status_html


async def test_quota_overflow_is_reported_everywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    dht = MemoryDht()
    gws = []
    for site, extra in (("campus-a", {}), ("campus-b", {"max-services-per-site": 2})):
        flags = {
            "site": site,
            "type": (T,),
            "state-dir": str(tmp_path / site),
            "election": False,
            "public": True,
        }
        gws.append(Gateway(build({}, {**flags, **extra}), MemoryLink(), MemoryRendezvous(dht)))
    a, b = gws
    await a.start()
    await b.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="z2z"):
            for i in range(5):
                a.service_up(replace(PRINTER, instance=f"Printer {i}"))
            await until(lambda: b.bridge.stats.rejected["quota-services"] >= 3)
        await until(lambda: len(b.link.published) == 2)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        over_lines = [m for m in warnings if "over its quota" in m]
        assert len(over_lines) == 1, warnings
        assert "campus-a" in over_lines[0] and "max-services-per-site" in over_lines[0]

        status = b.status()
        assert status.over_quota["campus-a"]["refused"] == 3
        assert status.over_quota["campus-a"]["limit"] == 2
        assert "1 site(s) over quota" in status.systemd_summary()[1]
        assert not a.status().over_quota

        text = Metrics(b.status).render().decode()
        assert 'z2z_site_over_quota{reason="quota-services",site="campus-a"} 1.0' in text
        assert 'z2z_quota_refused_records{reason="quota-services",site="campus-a"} 3.0' in text

        page = render_status_html(b.status().as_json())
        assert "OVER QUOTA: campus-a" in page and "max-services-per-site (2/2)" in page

        b._write_status()
        capsys.readouterr()
        main(["status", "--state-dir", str(tmp_path / "campus-b")])
        out = capsys.readouterr().out
        assert "campus-a OVER max-services-per-site (2/2, 3 refused)" in out
        a._write_status()
        main(["status", "--state-dir", str(tmp_path / "campus-a")])
        assert "every site within its quotas" in capsys.readouterr().out
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_status_json_is_what_asdict_gives_and_reports_are_paced(tmp_path: Path) -> None:
    """status.json is built without asdict's deep copy (costly at thousands of services)."""
    from dataclasses import asdict

    from z2z.app.status import ReportPacer

    dht = MemoryDht()
    flags = {"site": "campus-a", "type": (T,), "state-dir": str(tmp_path), "election": False, "public": True}
    gw = Gateway(build({}, flags), MemoryLink(), MemoryRendezvous(dht))
    await gw.start()
    try:
        for i in range(3):
            gw.service_up(replace(PRINTER, instance=f"Printer {i}"))
        await until(lambda: len(gw.bridge.exports()) == 3)
        status = gw.status()
        full = asdict(status)
        for name in ("puts", "flap_holds"):
            del full[name]
        assert status.as_json() == full
    finally:
        await gw.stop()
    pacer = ReportPacer(every=1.0, share=0.02)
    assert pacer.due(0.0)
    pacer.done(0.0, 0.001)  # cheap: every second
    assert not pacer.due(0.4) and pacer.due(1.0)
    pacer.done(1.0, 0.1)  # 100 ms a report: at most 2 % of a core, so every 5 s
    assert not pacer.due(5.0) and pacer.due(5.6)
