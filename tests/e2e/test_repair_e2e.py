"""A push lost on a listen that looks alive is repaired by the next anti-entropy round (issue 17, item 2).

Campus A's gateway exports 200 instances (four python-zeroconf publisher
processes, one burst) and campus B's lists them.  Then B's listen is made deaf
(tests/support/listen_cut.py): nftables in ``b-gw`` drops the data the REST
proxy sends on B's listen connections, while bare ACKs pass, so the connection
stays open and answers keep-alives and nothing tells B.  One more instance is
registered on campus A; it must be listed on B's link (``avahi-browse`` against
a real avahi-daemon on ``b-client``) within one anti-entropy period (8 s here,
plus its 10 % jitter) and the round's own time after A exported it.  The rule
must have dropped packets (the push really was lost), B's listen connections
must be the same ones (a reconnect would replay the key: not the repair under
test), and B's status must count a full get and say the truth: the rendezvous
is fine and no answer was too big.

The 1,000-service version, 15 minutes after start with the default 30 s period
and several trials, is ``bench/repair.py`` (docs/performance.md).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from typing import Any

import pytest
from support.avahi_helpers import missing_tools, unescape
from support.listen_cut import cut, heal, listen_ports, lost_packets
from support.testbed import Proc, Testbed

_missing = missing_tools() + [t for t in ("nft", "ss") if shutil.which(t) is None]
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)} (avahi, nftables, iproute2)"),
]

T = "_ipp._tcp"
SERVICES = 200
PUBLISHERS = 4
ANTI_ENTROPY = 8.0
LOST = "Lost Push"


def status(tb: Testbed, host: str) -> dict[str, Any]:
    try:
        doc = json.loads((tb.workdir / f"state-{host}" / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def gateway(tb: Testbed, host: str, site: str, rendezvous: str) -> Proc:
    argv = [sys.executable, "-m", "z2z", "run", "--public", "--site", site, "--interface", "lan0",
            "--rendezvous", rendezvous, "--type", T, "--state-dir", str(tb.workdir / f"state-{host}"),
            "--no-election", "--anti-entropy", str(ANTI_ENTROPY), "--log-level", "info"]  # fmt: skip
    proc = tb.spawn(host, argv, name=f"{host}-z2z")
    proc.wait_line(r"bridging _ipp._tcp", timeout=30, stream="stderr")
    return proc


def listed(browse: Proc) -> set[str]:
    """Instances avahi-browse -pk lists now (``+`` lines, less ``-`` lines)."""
    shown: set[str] = set()
    for line in browse.lines():
        f = line.split(";")
        if len(f) >= 5 and f[0] in "+-":
            (shown.add if f[0] == "+" else shown.discard)(unescape(f[3]))
    return shown


def wait_for(pred: Any, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def test_a_push_lost_on_a_live_listen_is_repaired_within_one_anti_entropy_period(testbed: Testbed) -> None:
    tb = testbed
    dht = tb.start_dht()
    tb.start_avahi("b-client")
    gateway(tb, "a-gw", "campus-a", dht.proxy_urls[0])
    gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1])
    browse = tb.spawn("b-client", ["avahi-browse", "-pk", T], name="b-client-browse",
                      env=tb.avahis["b-client"].env)  # fmt: skip
    address = tb.node("a-printer").ipv4
    printers = []
    for k in range(PUBLISHERS):
        argv = ["--control", "--no-probe", "--type", T, "--host", f"printer{k}", "--address", address,
                "--txt", "txtvers=1", "--txt", "rp=ipp/print"]  # fmt: skip
        printers.append(tb.spawn_tool("a-printer", "mdns_printer", *argv, name=f"a-pr-{k}", stdin=True))
    try:
        for pr in printers:
            pr.wait_event("ready", timeout=30)
        for k, pr in enumerate(printers):
            pr.send(f"burst {SERVICES // PUBLISHERS} Campus P{k}-")
        assert wait_for(lambda: len(listed(browse)) >= SERVICES, 90), f"only {len(listed(browse))} on B"

        ports = list(dht.proxy_ports)
        idle_ms = int(3 * ANTI_ENTROPY * 1000)  # longer than any get connection stays silent
        listens: list[int] = []

        def listening() -> bool:
            listens[:] = listen_ports(tb, "b-gw", ports, idle_ms)
            return bool(listens)

        assert wait_for(listening, 60), "no listen connection from B to its proxy"
        before = status(tb, "b-gw")
        cut(tb, "b-gw", ports, listens)
        try:
            printers[0].send(f"register {LOST}")
            assert wait_for(lambda: f"{LOST}.{T}" in status(tb, "a-gw").get("exported", []), 15)
            exported_at = time.monotonic()
            bound = ANTI_ENTROPY * 1.1 + 10.0  # one period with its jitter, plus the round itself
            repaired = wait_for(lambda: LOST in listed(browse), bound, step=0.1)
            took = time.monotonic() - exported_at
            dropped = lost_packets(tb, "b-gw")
            still = listen_ports(tb, "b-gw", ports, idle_ms)
        finally:
            heal(tb, "b-gw")
        print(f"lost push listed on B {took:.1f} s after A exported it; {dropped} packets of pushes dropped")
        assert dropped > 0, "nothing was dropped: the push was not lost"
        assert set(listens) <= set(still), "B's listen reconnected: a replay, not the anti-entropy"
        assert repaired, f"{LOST!r} not listed on B within {bound:g} s of A exporting it"
        time.sleep(1.5)  # status.json is rewritten at most once a second
        after = status(tb, "b-gw")
        assert after["anti_entropy_full_gets"] > before["anti_entropy_full_gets"]
        assert after["rendezvous_ok"] is True
        assert after["answers_too_big"] == {}
    finally:
        for pr in printers:
            pr.kill()
