"""Run an `AvahiLink` and speak JSON lines, like link_probe.py does for ZeroconfLink.

    DBUS_SYSTEM_BUS_ADDRESS=... python avahi_probe.py --iface lan0 --type _ipp._tcp

Events and commands are link_probe.py's (``ready``, ``up``, ``down``,
``published``, ``withdrawn``, ``error``, ``closed``; ``publish``, ``withdraw``,
``quit``), plus, for the many-services test::

    {"op": "publish_many", "count": 2000, "hosts": 1000, "prefix": "Bulk", "host": "bulk",
     "type": "_ipp._tcp", "port": 631, "txt": [hex...], "net": "10.77.2."}
        -> {"event": "published_many", "count": ..., "seconds": ..., "renamed": [...],
            "connections": ...}
    {"op": "withdraw_many", "count": 2000, "prefix": "Bulk", "type": "_ipp._tcp"}
        -> {"event": "withdrawn_many", "seconds": ...}
    {"op": "stats"} -> {"event": "stats", "connections": ..., "daemon": ...}

Service ``i`` of a bulk publication is ``<prefix> <i>`` on host ``<host>-<i % hosts>``
with address ``<net><1 + i % hosts // 250>.<i % hosts % 250 + 1>``-like unique
addresses (see `bulk_service`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

from link_probe import Printer, emit, service_from_json

from z2z.adapters.link.avahi import AvahiLink
from z2z.adapters.link.base import LinkError
from z2z.core.records import Service


def bulk_service(cmd: dict[str, Any], i: int) -> Service:
    h = i % int(cmd.get("hosts", cmd["count"]))
    return Service(
        type=cmd.get("type", "_ipp._tcp"),
        instance=f"{cmd.get('prefix', 'Bulk')} {i}",
        host=f"{cmd.get('host', 'bulk')}-{h}",
        port=int(cmd.get("port", 631)),
        txt=tuple(bytes.fromhex(t) for t in cmd.get("txt", [])),
        addresses=(f"10.{100 + h // 62500}.{h // 250 % 250}.{h % 250 + 1}",),
    )


async def handle(link: AvahiLink, cmd: dict[str, Any]) -> bool:
    op = cmd.get("op")
    if op == "publish":
        service = service_from_json(cmd["service"])
        t0 = time.monotonic()
        used = await link.publish(service)
        emit("published", instance=used, asked=service.instance, t0=t0)
    elif op == "withdraw":
        t0 = time.monotonic()
        await link.withdraw(cmd["type"], cmd["instance"])
        emit("withdrawn", type=cmd["type"], instance=cmd["instance"], t0=t0)
    elif op == "publish_many":
        services = [bulk_service(cmd, i) for i in range(int(cmd["count"]))]
        t0 = time.monotonic()
        used = await asyncio.gather(*(link.publish(s) for s in services))
        renamed = [u for s, u in zip(services, used, strict=True) if u != s.instance]
        emit("published_many", count=len(used), seconds=time.monotonic() - t0, renamed=renamed,
             connections=link.connections)  # fmt: skip
    elif op == "withdraw_many":
        services = [bulk_service(cmd, i) for i in range(int(cmd["count"]))]
        t0 = time.monotonic()
        await asyncio.gather(*(link.withdraw(s.type, s.instance) for s in services))
        emit("withdrawn_many", seconds=time.monotonic() - t0, connections=link.connections)
    elif op == "stats":
        emit("stats", connections=link.connections, daemon=link.daemon)
    elif op == "quit":
        return False
    else:
        emit("error", error=f"unknown op {op!r}")
    return True


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iface", action="append", default=[])
    ap.add_argument("--type", action="append", default=[])
    ap.add_argument("--objects-per-connection", type=int, default=None)
    ap.add_argument("--away-grace", type=float, default=None)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    kw: dict[str, Any] = {}
    if args.objects_per_connection:
        kw["objects_per_connection"] = args.objects_per_connection
    if args.away_grace is not None:
        kw["away_grace"] = args.away_grace
    try:
        link = AvahiLink(args.iface, **kw)
        await link.start(args.type, Printer())
    except LinkError as exc:
        emit("error", error=str(exc))
        return 2
    emit("ready", scopes=[str(s) for s in link.scopes], daemon=link.daemon)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            try:
                if not await handle(link, json.loads(line)):
                    break
            except Exception as exc:  # report and keep serving
                emit("error", error=repr(exc))
    finally:
        await link.close()
        emit("closed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
