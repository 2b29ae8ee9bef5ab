"""The relay in a running gateway, on in-memory links and DHT: what the importing link shows.

Never silently wrong: an import that needs the relay is held (not published)
until the exporting site's relay record arrives, then published as a proxy on
this gateway's own address and a port it listens on; the status, the unicast
DNS view and the metrics say which imports are relayed and why.  A public
network has no relay at all.  (Bytes through the relay: tests/unit/adapters/
test_relay_channel.py and tests/e2e/test_relay_e2e.py.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from support.helpers import until

from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app import keys
from z2z.app.cli import _relay_line
from z2z.app.config import build
from z2z.app.gateway import Gateway
from z2z.app.metrics import Metrics
from z2z.app.web import render_status_html
from z2z.core.records import Service

T = "_ipp._tcp"
PRINTER = Service(T, "Lab Printer", "printer", 631, (b"rp=ipp/print",), ("192.0.2.10",))


def gateway(tmp: Path, site: str, dht: MemoryDht, secret: Path | None, **extra: Any) -> Gateway:
    settings: dict[str, Any] = {
        "site": site,
        "type": (T,),
        "state-dir": str(tmp / site),
        "election": False,
        "relay-listen": "127.0.0.1:0",
        **extra,
    }
    if secret is None:
        settings["public"] = True
    else:
        settings["network-secret"] = str(secret)
    return Gateway(build({}, settings), MemoryLink(), MemoryRendezvous(dht))


async def test_relayed_import_is_held_until_a_relay_path_exists_then_shown_on_our_address(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "net.secret"
    keys.new_secret(secret)
    dht = MemoryDht()
    a = gateway(tmp_path, "campus-a", dht, secret, relay="never")  # publishes no relay record
    b = gateway(tmp_path, "campus-b", dht, secret, relay="always")
    assert a.relay is None and b.relay is not None
    b.relay.records_every = b.relay.health_every = 0.05
    await a.start()
    await b.start()
    try:
        a.service_up(PRINTER)
        await until(lambda: b.relay is not None and b.relay.imports)
        await asyncio.sleep(0.2)
        assert isinstance(b.link, MemoryLink) and (T, "Lab Printer") not in b.link.published
        [imp] = b.status().as_json()["relay"]["imports"]
        assert (imp["route"], imp["reason"]) == ("hold", "always; no relay path to the site")

        # A's relay comes up (a restart with relay on): B publishes the proxy on its own address.
        await a.stop()
        a = gateway(
            tmp_path, "campus-a", dht, secret, relay="auto", **{"relay-advertise": "198.51.100.7:4224"}
        )
        await a.start()
        a.service_up(PRINTER)
        await until(lambda: (T, "Lab Printer") in b.link.published, timeout=10)
        shown = b.link.published[(T, "Lab Printer")]
        assert b.relay is not None
        assert shown.addresses == (b.relay.link_address,) and shown.port != PRINTER.port
        st = b.status().as_json()["relay"]
        assert [(i["route"], i["reason"]) for i in st["imports"]] == [("relay", "always")]
        assert st["sites"]["campus-a"] == {"endpoint": "198.51.100.7:4224", "reachable": True}
        assert b.relay.as_shown([s for _, s in b.bridge.imports()]) == [shown]
        # every front says which import is relayed and why
        html = render_status_html(b.status().as_json())
        assert "<td>Lab Printer</td>" in html and "<td>relay</td><td>always</td>" in html
        metrics = Metrics(b.status).render().decode()
        assert 'z2z_relay_imports{reason="always",route="relay"} 1.0' in metrics or (
            'z2z_relay_imports{route="relay",reason="always"} 1.0' in metrics
        ), metrics
        assert "Lab Printer._ipp._tcp from campus-a: relay (always)" in _relay_line(
            b.status().as_json()["relay"]
        )
    finally:
        await a.stop()
        await b.stop()


async def test_public_network_has_no_relay(tmp_path: Path) -> None:
    gw = gateway(tmp_path, "campus-a", MemoryDht(), None)
    assert gw.relay is None
    assert gw.status().as_json()["relay"] is None
