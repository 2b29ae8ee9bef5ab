"""Many sites' exports put into a real DHT exactly as their gateways would: a bench tool.

``python -m bench.feeder --proxy URL --network NET --secret-file FILE --sites 19 --per-site 211``

Each fed site is a `z2z.core.bridge.Bridge` of its own, with its own Ed25519 site
key and the network's secret (`z2z.core.security.Codec`): the values it makes are
the envelopes a real gateway of that site would put (z2z's own encoder, sealed and
signed), put through z2z's own REST-proxy adapter into a real dhtnode, and
refreshed on the bridge's own clock (`Bridge.tick`).  Only the link is missing:
the services are handed to the bridge instead of being browsed.  `bench.scale`
uses it to make one importing gateway see 5,000 services from 20 sites without
running 20 gateways and their links on a 2-core machine.

Stdout: JSON lines, ``{"event": "fed", "t": ..., "puts": N}`` once every site's
first puts are confirmed, then ``{"event": "refreshed", ...}`` per tick with puts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from z2z.adapters.rendezvous.proxy import ProxyRendezvous
from z2z.app.config import GatewayConfig
from z2z.app.keys import read_secret
from z2z.core.bridge import Bridge, BridgeSettings, Put
from z2z.core.records import Service
from z2z.core.security import Codec

# What a campus printer announces (CUPS/Avahi AirPrint TXT, ~400 bytes): the value sizes are real.
IPP_TXT = (
    b"txtvers=1",
    b"qtotal=1",
    b"rp=ipp/print",
    b"ty=HP Color LaserJet MFP M479fdw",
    b"adminurl=https://printer.example.edu/hp/device/info_config_AirPrint.html",
    b"note=Building 12",
    b"priority=10",
    b"product=(HP Color LaserJet MFP M479fdw)",
    b"pdl=application/octet-stream,application/pdf,application/postscript,image/jpeg,image/urf",
    b"Color=T",
    b"Duplex=T",
    b"URF=CP1,IS1-5-7,MT1-2-3-5-12,OB10,PQ4,RS300-600,V1.4,W8,DM1",
    b"TLS=1.2",
    b"kind=document,envelope,photo",
)


def emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


def site_services(k: int, n: int, service_type: str) -> list[Service]:
    """`n` printers of fed site `k`, each with its own host and a routable address of the site."""
    return [
        Service(
            service_type,
            f"Fed{k:02d} Printer {i:04d}",
            f"fed{k:02d}-p{i:04d}",
            631,
            IPP_TXT,
            (f"10.{100 + k}.{i // 250}.{i % 250 + 1}",),
        )
        for i in range(n)
    ]


async def feed(a: argparse.Namespace) -> None:
    secret = read_secret(a.secret_file) if a.secret_file else None
    bridges = []
    sizes = [a.per_site] * a.sites
    if a.total is not None:  # spread `total` over the sites, sizes differing by at most one
        base, extra = divmod(a.total, a.sites)
        sizes = [base + (1 if k < extra else 0) for k in range(a.sites)]
    for k in range(a.sites):
        settings = BridgeSettings(
            site=f"fed-{k:02d}",
            network=a.network,
            node=f"{k:016x}",
            types=(a.type,),
            ttl=a.ttl,
            refresh=a.refresh,
        )
        codec = Codec(a.network, secret, Ed25519PrivateKey.generate() if secret else None)
        bridges.append((Bridge(settings, codec=codec), site_services(k, sizes[k], a.type)))
    store = ProxyRendezvous(a.proxy, timeout=10.0)
    await store.start()
    gate = asyncio.Semaphore(a.in_flight)
    failures = 0

    async def put(p: Put) -> None:
        nonlocal failures
        async with gate:
            for attempt in range(5):
                try:
                    await store.put(p.key, p.value_id, p.data)
                    return
                except Exception as exc:  # a bench tool: count, retry, go on
                    failures += 1
                    print(f"feeder: put failed ({exc}); retry {attempt + 1}", file=sys.stderr)
                    await asyncio.sleep(0.5)

    async def put_all(actions: Sequence[object]) -> int:
        puts = [p for p in actions if isinstance(p, Put)]
        await asyncio.gather(*(put(p) for p in puts))
        return len(puts)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    now = time.time()
    # Sites interleaved, as 20 gateways starting together would put.
    actions = [
        act
        for i in range(max(sizes))
        for bridge, services in bridges
        if i < len(services)
        for act in bridge.local_up(services[i], now)
    ]
    emit("feeding", values=len(actions))
    n = await put_all(actions)
    emit("fed", puts=n, failures=failures)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), a.tick)
        if stop.is_set():
            break
        now = time.time()
        n = await put_all([act for bridge, _ in bridges for act in bridge.tick(now)])
        if n:
            emit("refreshed", puts=n, failures=failures)
    await store.close()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.feeder", description=__doc__.split("\n")[0])
    p.add_argument("--proxy", required=True, help="OpenDHT REST proxy URL")
    p.add_argument("--network", default="z2z")
    p.add_argument("--secret-file", help="the network secret (none: the open mode)")
    p.add_argument("--sites", type=int, default=19)
    p.add_argument("--per-site", type=int, default=211)
    p.add_argument("--total", type=int, help="services in all, spread over the sites (instead of --per-site)")
    p.add_argument("--type", default="_ipp._tcp")
    # A gateway's defaults (they were 120 / 40 before issue 14): the fed sites must refresh
    # as often as real ones would, or the importer's steady CPU is measured on 12x the news.
    defaults = GatewayConfig.__dataclass_fields__
    p.add_argument("--ttl", type=int, default=defaults["ttl"].default)
    p.add_argument("--refresh", type=float, default=defaults["refresh"].default)
    p.add_argument("--tick", type=float, default=2.0, help="seconds between refresh checks")
    p.add_argument("--in-flight", type=int, default=16, help="puts in flight at once")
    asyncio.run(feed(p.parse_args(argv)))


if __name__ == "__main__":
    main()
