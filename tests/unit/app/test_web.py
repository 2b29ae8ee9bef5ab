"""Seeing what is going on: Prometheus metrics scraped from a running gateway, the
status page and /status.json, and that page rendered by a real headless Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import tempfile
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.helpers import PRINTER, until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app.config import build, check_settings
from z2z.app.gateway import Gateway
from z2z.app.web import HttpServer, render_status_html

T = "_ipp._tcp"


async def pair(tmp_path: Path, **extra: object) -> tuple[MemoryDht, Gateway, Gateway]:
    dht = MemoryDht()
    gws = []
    for site in ("campus-a", "campus-b"):
        flags = {
            "site": site,
            "type": (T,),
            "state-dir": str(tmp_path / site),
            "election": False,
            "metrics-listen": "127.0.0.1:0",
            "http-listen": "127.0.0.1:0",
            "public": True,
            **extra,
        }
        gw = Gateway(build({}, flags), MemoryLink(), MemoryRendezvous(dht))
        await gw.start()
        gws.append(gw)
    return dht, gws[0], gws[1]


def url(gw: Gateway, which: int, path: str) -> str:
    host, port = gw.web[which].address
    return f"http://{host}:{port}{path}"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_scrape_of_a_running_gateway(tmp_path: Path) -> None:
    dht, a, b = await pair(tmp_path)
    try:
        a.service_up(PRINTER)
        await until(lambda: b.link.published)
        b.bridge.remote_value(T, b"not json", 0.0)  # one rejected record
        async with httpx.AsyncClient() as client:
            reply = await client.get(url(b, 0, "/metrics"))
            reply_a = await client.get(url(a, 0, "/metrics"))
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
        got, got_a = samples(reply.text), samples(reply_a.text)
        assert got[("z2z_services", (("direction", "import"), ("site", "campus-a"), ("type", T)))] == 1
        assert got_a[("z2z_services", (("direction", "export"), ("site", "campus-a"), ("type", T)))] == 1
        assert any(name == "z2z_rejected_records_total" and v >= 1 for (name, _), v in got.items())
        assert got[("z2z_leader", ())] == 1 and got[("z2z_stage", ())] == 0
        assert got[("z2z_island_size", ())] == 1 and got[("z2z_dht_peers", ())] == 0
        assert got[("z2z_rendezvous_up", ())] == 1
        puts = ("z2z_rendezvous_operation_seconds_count", (("op", "put"), ("store", "rendezvous")))
        gets = ("z2z_rendezvous_operation_seconds_count", (("op", "get"), ("store", "rendezvous")))
        assert got_a[puts] >= 1 and got[gets] >= 1
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_status_json_page_and_read_only(tmp_path: Path) -> None:
    dht, a, b = await pair(tmp_path)
    try:
        a.service_up(PRINTER)
        await until(lambda: b.link.published)
        async with httpx.AsyncClient() as client:
            doc = (await client.get(url(b, 1, "/status.json"))).json()
            page = await client.get(url(b, 1, "/"))
            post = await client.post(url(b, 1, "/status.json"), content=b"x")
            missing = await client.get(url(b, 1, "/etc/passwd"))
            metrics_on_page_port = await client.get(url(b, 1, "/metrics"))
        assert doc["site"] == "campus-b"
        assert [(s["direction"], s["site"], s["instance"]) for s in doc["services"]] == [
            ("import", "campus-a", "Printer")
        ]
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Printer" in page.text and "http-equiv=refresh" in page.text
        assert (post.status_code, missing.status_code, metrics_on_page_port.status_code) == (405, 404, 404)
    finally:
        await asyncio.gather(a.stop(), b.stop())


def test_page_escapes_everything() -> None:
    doc = {
        "site": "<b>x</b>",
        "network": "z2z",
        "node": "n",
        "time": 0,
        "bridging": True,
        "rendezvous_ok": False,
        "services": [
            {
                "direction": "import",
                "site": "s<script>",
                "type": T,
                "instance": "<script>alert(1)</script>",
                "host": "h",
                "port": 1,
                "addresses": ["10.0.0.1"],
            }
        ],
    }
    doc |= {
        "flapping": ["<i>Flapper</i>._ipp._tcp"],
        "rendezvous_failing": ["HTTP 500"],
        "rendezvous_failures": {"HTTP 500": 19, "<junk>": 3},
    }
    html = render_status_html(doc)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "UNREACHABLE (HTTP 500)" in html
    assert "&lt;i&gt;Flapper&lt;/i&gt;._ipp._tcp" in html and "<i>" not in html
    assert "<td>rendezvous failed</td><td>&lt;junk&gt;</td><td>3</td>" in html


async def test_bare_port_binds_localhost(tmp_path: Path) -> None:
    cfg = build({}, check_settings({"site": "s", "state-dir": str(tmp_path), "http-listen": 0}))
    assert cfg.http_listen == "127.0.0.1:0"
    server = HttpServer(cfg.http_listen, {})
    await server.start()
    assert server.address[0] == "127.0.0.1"
    await server.close()


# -- a real browser ----------------------------------------------------------------------


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install chromium)")
async def test_status_page_in_headless_chromium(tmp_path: Path) -> None:
    dht, a, b = await pair(tmp_path)
    try:
        a.service_up(PRINTER)
        await until(lambda: b.link.published)
        page = url(b, 1, "/")
        with tempfile.TemporaryDirectory(prefix="z2z-chromium-") as profile:
            common = [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--no-first-run",
                "--no-default-browser-check",
                f"--user-data-dir={profile}",
                "--window-size=1200,900",
            ]
            shot = Path(os.environ.get("Z2Z_SCREENSHOT", tmp_path / "status.png"))
            dom = await run(*common, "--dump-dom", page)
            await run(*common, f"--screenshot={shot}", page)
        # what the browser shows: the gateway, its role, and the printer under campus-a
        assert '<span id="site">campus-b</span>' in dom
        assert "<dd>bridging</dd>" in dom
        services = dom[dom.index('<div id="services">') :]
        assert "<h3>campus-a</h3>" in services and "<td>Printer</td>" in services
        assert "printer-campus-a-z2z:631" in services and "10.1.0.9" in services
        png = shot.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) == (1200, 900) and len(png) > 10_000  # a real page, not a blank one
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def run(*argv: str | None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *[a for a in argv if a], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()
