"""Lose pushes on purpose: nftables rules in a gateway's namespace between it and the REST proxies.

Two kinds of loss (`bench.repair`, tests/e2e/test_repair_e2e.py):

* `cut` with `listens`: only the data the proxy sends on the gateway's listen
  connections is dropped; bare ACKs pass, so the connection stays open and
  answers TCP keep-alives.  Every push is lost and nothing tells the gateway:
  only its anti-entropy can bring what was pushed.
* `cut` without: every TCP packet to or from the proxies' ports (a dead uplink).

`heal` removes either.  Needs ``nft`` (Debian ``nftables``) and ``ss`` (iproute2).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from support.testbed import Testbed

_CUT = """
table inet z2zcut {{
    chain input {{
        type filter hook input priority 0; policy accept;
        tcp sport {{ {ports} }} drop
    }}
    chain output {{
        type filter hook output priority 0; policy accept;
        tcp dport {{ {ports} }} drop
    }}
}}
"""

# Only the data the proxy sends on the gateway's listen connections: bigger than a bare ACK (52 bytes
# with timestamps, a few SACK blocks more), so keep-alive probes are still answered and the
# listen looks healthy to the gateway while every push on it is lost.
_CUT_LISTEN = """
table inet z2zcut {{
    counter lost {{ }}
    chain input {{
        type filter hook input priority 0; policy accept;
        tcp sport {{ {ports} }} tcp dport {{ {listens} }} ip length > 100 counter name lost drop
    }}
}}
"""
# A connection that sent nothing for this long is a listen (z2z gets send every anti-entropy period).
LISTEN_IDLE_MS = 45_000


def listen_ports(tb: Testbed, host: str, ports: Sequence[int], idle_ms: int = LISTEN_IDLE_MS) -> list[int]:
    """Local ports of `host`'s listen connections to the proxies: established, silent for long.

    A listen sends its request once and then only receives; the anti-entropy's gets send a
    request every period, and httpx drops their pooled connections within seconds.
    """
    found: list[int] = []
    for port in ports:
        r = tb.node(host).run("ss", "-Htni", "state", "established", f"( dport = :{port} )")
        local: int | None = None
        for line in r.stdout.splitlines():
            if not line.startswith(("\t", " ")):
                local = int(line.split()[2].rsplit(":", 1)[1])
                continue
            m = re.search(r"\blastsnd:(\d+)", line)
            if local is not None and m and int(m.group(1)) >= idle_ms:
                found.append(local)
    return found


def cut(tb: Testbed, host: str, ports: Sequence[int], listens: Sequence[int] = ()) -> None:
    """Drop TCP between `host` and the REST proxies (an nftables table): all of it, or, given
    `listens` (local ports), only the data the proxies send on those connections."""
    path = tb.workdir / f"nft-cut-{host}.conf"
    text = _CUT_LISTEN if listens else _CUT
    path.write_text(text.format(ports=", ".join(map(str, ports)), listens=", ".join(map(str, listens))))
    tb.node(host).run("nft", "-f", str(path))


def heal(tb: Testbed, host: str) -> None:
    tb.node(host).run("nft", "delete", "table", "inet", "z2zcut")


def lost_packets(tb: Testbed, host: str) -> int:
    r = tb.node(host).run("nft", "-j", "list", "counter", "inet", "z2zcut", "lost")
    for item in json.loads(r.stdout)["nftables"]:
        if "counter" in item:
            return int(item["counter"]["packets"])
    return 0
