"""The ``subtypes`` key reloaded (SIGHUP) on gateways with the Avahi backend, judged by avahi-browse.

avahi-daemon on a-printer publishes a printer under two subtypes (``_universal`` and
``_print`` of ``_ipp._tcp``); both gateways run ``--mdns avahi`` beside their own
avahi-daemon.  a-gw's file says ``subtypes = ["_universal._sub._ipp._tcp"]``: only that
subtype is browsed on A (mDNS cannot list an instance's subtypes, and the Avahi backend
learns only what it browses), so avahi-browse on b-client lists the bridged printer under
``_universal`` and not under ``_print``.  Then the file says ``_print`` instead and a-gw
gets SIGHUP (``AvahiLink.set_subtypes``): B's proxy must move from the one subtype to
the other, as b-client's own avahi-daemon sees it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from support.avahi_helpers import browse, missing_tools, wait_for
from support.testbed import Proc, Testbed

pytest.importorskip("avahi", reason="needs python3-avahi (the avahi module)")
pytest.importorskip("dbus.mainloop.glib", reason="needs python3-dbus")

_missing = missing_tools()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (avahi-daemon, avahi-utils)"),
]

T = "_ipp._tcp"
NAME = "Reload Printer 2.14"
UNIVERSAL, PRINT = f"_universal._sub.{T}", f"_print._sub.{T}"
GATEWAY = Path(__file__).resolve().parents[1] / "tools" / "z2z_gateway.py"


def gateway(tb: Testbed, host: str, site: str, rendezvous: str, *extra: str) -> Proc:
    """``z2z run --mdns avahi`` on `host`, beside that host's avahi-daemon."""
    proc = tb.spawn(
        host,
        [sys.executable, str(GATEWAY), "--mdns", "avahi", "run", "--public", "--no-election", "--site", site,
         "--interface", "lan0", "--rendezvous", rendezvous, "--type", T,
         "--state-dir", str(tb.workdir / f"state-{host}"), "--log-level", "debug", *extra],
        name=f"{host}-z2z",
        env=tb.avahis[host].env,
    )  # fmt: skip
    proc.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    return proc


def listed(tb: Testbed, subtype: str) -> bool:
    """avahi-browse of `subtype` on b-client lists the bridged printer."""
    return any(
        s.get("event") == "+" and s["instance"] == NAME for s in browse(tb, "b-client", False, subtype)
    )


def test_reloaded_subtypes_move_the_proxy_between_subtypes(testbed: Testbed) -> None:
    tb = testbed
    dht = tb.start_dht()
    tb.start_avahis(["a-printer", "b-client", "a-gw", "b-gw"])
    conf_a = tb.workdir / "a.toml"
    conf_a.write_text(f'subtypes = ["{UNIVERSAL}"]\n')
    gw_a = gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0], "--config", str(conf_a))
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1])
    printer = tb.spawn(
        "a-printer",
        [
            "avahi-publish",
            "-s",
            f"--subtype={UNIVERSAL}",
            f"--subtype={PRINT}",
            NAME,
            T,
            "631",
            "rp=ipp/print",
        ],
        name="a-pub-avahi",
        env=tb.avahis["a-printer"].env,
    )
    # Both subtypes are on A's link (a-printer's own avahi-daemon lists them).
    wait_for("both subtypes on A", lambda: all(
        any(s["instance"] == NAME for s in browse(tb, "a-printer", False, sub)) for sub in (UNIVERSAL, PRINT)
    ), timeout=20, every=0.5)  # fmt: skip

    wait_for(f"{NAME} under _universal on B", lambda: listed(tb, UNIVERSAL), timeout=40, every=1.0)
    proxy = [s for s in browse(tb, "b-client") if s["instance"] == NAME and "port" in s]
    assert proxy and {s["port"] for s in proxy} == {631}, proxy
    time.sleep(2)  # a _print PTR, if z2z wrongly carried one, has had time to cross
    assert not listed(tb, PRINT), "only the browsed subtype is learned and carried"

    conf_a.write_text(f'subtypes = ["{PRINT}"]\n')
    gw_a.signal(1)  # SIGHUP
    gw_a.wait_line(r"configuration reloaded \(subtypes\)", timeout=10, stream="stderr")
    wait_for(f"{NAME} under _print on B", lambda: listed(tb, PRINT), timeout=40, every=1.0)
    wait_for(f"{NAME} gone from _universal on B", lambda: not listed(tb, UNIVERSAL), timeout=40, every=1.0)
    # The instance itself stayed bridged all along (a reload does not drop what is still allowed).
    assert any(s["instance"] == NAME and "port" in s for s in browse(tb, "b-client"))

    printer.stop(timeout=10)
    assert gw_a.stop(timeout=15) == 0 and gw_b.stop(timeout=15) == 0
    for gw in (gw_a, gw_b):
        assert "Traceback" not in gw.stderr(), gw.stderr()[-3000:]
