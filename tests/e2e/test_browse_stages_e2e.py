"""`z2z browse` / `z2z resolve` after stage 3 (issue 12, item 1): a printer that appears once
both leaders bridge through their own DHT is put only there; a laptop on campus B, given
only the rendezvous, still finds it by following the leaders registry into that DHT."""

from __future__ import annotations

import json
import sys
import time

import pytest
from support.testbed import Testbed, matching

pytestmark = pytest.mark.netns

T = "_ipp._tcp"


def status(tb: Testbed, host: str) -> dict:
    try:
        return json.loads((tb.workdir / f"state-{host}" / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def z2z(tb: Testbed, *args: str) -> tuple[int, str, str]:
    out = tb.node("b-client").run(sys.executable, "-m", "z2z", *args, check=False, timeout=60)
    return out.returncode, out.stdout, out.stderr


def test_browse_and_resolve_find_a_printer_put_only_in_the_leaders_dht(testbed: Testbed) -> None:
    tb = testbed
    dht = tb.start_dht()
    for host, site, url in (("a-gw", "campus-a", dht.proxy_urls[0]), ("b-gw", "campus-b", dht.proxy_urls[1])):
        gw = tb.spawn(
            host,
            [
                sys.executable,
                "-m",
                "z2z",
                "run",
                "--public",
                "--site",
                site,
                "--interface",
                "lan0",
                "--rendezvous",
                url,
                "--type",
                T,
                "--state-dir",
                str(tb.workdir / f"state-{host}"),
            ],
            name=f"{host}-z2z",
        )
        gw.wait_line(r"started for site", timeout=30, stream="stderr")
    deadline = time.monotonic() + 40
    while not all(status(tb, h).get("bridging_via") == "dht" for h in ("a-gw", "b-gw")):
        assert time.monotonic() < deadline, "the leaders never bridged via their own DHT"
        time.sleep(0.1)

    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
    tb.spawn_tool(
        "a-printer",
        "mdns_printer",
        "--name",
        "Late Printer",
        "--type",
        T,
        "--port",
        "631",
        "--host",
        "printer",
        "--address",
        "10.77.1.10",
        "--txt",
        "rp=ipp/print",
        "--txt",
        "Color=T",
    ).wait_event("registered", timeout=15)
    appeared = time.monotonic()

    found: list[dict] = []
    runs: list[float] = []
    while not found and time.monotonic() - appeared < 10:
        t0 = time.monotonic()
        code, out, err = z2z(tb, "browse", "--public", "--rendezvous", dht.proxy_urls[1], "--json", T)
        runs.append(time.monotonic() - t0)
        assert code == 0, err
        found = [f for f in json.loads(out) if f["instance"] == "Late Printer"]
    listed = time.monotonic() - appeared
    print(f"z2z browse listed the late printer {listed:.2f} s after it appeared; runs took {runs}")
    assert found, f"z2z browse did not list the late printer within 10 s (last stderr: {err})"
    assert listed <= 10
    [entry] = found
    assert entry["site"] == "campus-a" and entry["port"] == 631 and entry["addresses"] == ["10.77.1.10"]
    # it really lives only in the leaders' DHT: the rendezvous never had it
    assert "Late Printer" not in {e.service.instance for e in tb.dht_values(dht.proxy_urls[0])}
    # ...and campus B's link shows it too (the gateways bridge it)
    watch.wait_event(matching("up", instance="Late Printer"), timeout=10)

    code, out, err = z2z(tb, "resolve", "--public", "--rendezvous", dht.proxy_urls[1], "Late Printer", T)
    assert code == 0, err
    assert "Late Printer._ipp._tcp (site campus-a)" in out and ":631" in out
    assert "addresses: 10.77.1.10" in out
    assert "TXT: rp=ipp/print Color=T" in out

    # nothing reachable: one line on stderr, exit 3, within the budget
    t0 = time.monotonic()
    code, out, err = z2z(tb, "browse", "--public", "--rendezvous", "http://10.77.0.1:9", "--timeout", "5", T)
    assert code == 3 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("z2z: cannot read the rendezvous"), err
    assert time.monotonic() - t0 < 10
