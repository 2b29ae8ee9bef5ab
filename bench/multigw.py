"""Several real gateways in one process: how the formation benchmark fits 60 on 2 cores.

Each gateway is a full `z2z.app.gateway.Gateway` (own python-zeroconf instance bound to
its own address, own state dir, own embedded OpenDHT node for the leaders' DHT,
own rendezvous client); they only share the interpreter and the event loop, which
saves the ~1 s of CPU that importing z2z costs per process.  Run inside a
namespace whose ``lan0`` carries every address given.

    python -m bench.multigw --site campus-a --rendezvous URL --type _ipp._tcp \\
        --state-root DIR 10.77.1.2 10.77.1.3 10.77.1.4
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from z2z.adapters.link.zeroconf import ZeroconfLink
from z2z.adapters.rendezvous import open_rendezvous
from z2z.app.config import build, check_settings
from z2z.app.gateway import Gateway


async def main(args: argparse.Namespace) -> int:
    gateways = []
    for i, address in enumerate(args.addresses):
        flags = check_settings(
            {
                "site": args.site,
                "interface": [address],
                "rendezvous": args.rendezvous,
                "type": args.type,
                "state-dir": f"{args.state_root}/{i}",
                "dht-port": 4222 + i,
                "public": True,  # as before private networks became the default
            }
        )
        gw = Gateway(build({}, flags), ZeroconfLink([address]), open_rendezvous(args.rendezvous))
        if args.legacy_election and gw.leadership is not None:
            gw.leadership.heartbeat_port = None  # as before heartbeats: multicast every second
        gateways.append(gw)
    await asyncio.gather(*(gw.start() for gw in gateways))
    print("all started", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.gather(*(gw.stop() for gw in gateways), return_exceptions=True)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--site", required=True)
    p.add_argument("--rendezvous", required=True)
    p.add_argument("--type", action="append", required=True)
    p.add_argument("--state-root", required=True)
    p.add_argument(
        "--legacy-election", action="store_true", help="no heartbeat socket: announce every second (old)"
    )
    p.add_argument("addresses", nargs="+")
    level = os.environ.get("Z2Z_BENCH_LOG", "WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main(p.parse_args())))
