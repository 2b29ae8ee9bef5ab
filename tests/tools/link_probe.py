"""Run a `ZeroconfLink` and speak JSON lines, for tests that drive it in a namespace.

    python link_probe.py --iface lan0 --type _ipp._tcp

Prints one JSON object per line on stdout: ``ready``, ``up`` (a service),
``down``, ``published``, ``withdrawn``, ``error``, ``closed``; every event has
``t`` (time.monotonic(), shared by all processes on the machine).  Reads commands
from stdin, one JSON object per line:
``{"op": "publish", "service": {...}}``, ``{"op": "withdraw", "type": ..., "instance": ...}``,
``{"op": "quit"}``.  TXT strings travel as hex.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

from z2z.adapters.link.base import LinkError
from z2z.adapters.link.zeroconf import ZeroconfLink
from z2z.core.records import Service


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


def service_to_json(s: Service) -> dict[str, Any]:
    return {
        "type": s.type,
        "instance": s.instance,
        "host": s.host,
        "port": s.port,
        "txt": [t.hex() for t in s.txt],
        "addresses": list(s.addresses),
    }


def service_from_json(d: dict[str, Any]) -> Service:
    return Service(
        type=d["type"],
        instance=d["instance"],
        host=d["host"],
        port=int(d["port"]),
        txt=tuple(bytes.fromhex(t) for t in d.get("txt", [])),
        addresses=tuple(d.get("addresses", [])),
    )


class Printer:
    """A LinkListener that prints what it hears."""

    def service_up(self, service: Service) -> None:
        emit("up", service=service_to_json(service))

    def service_down(self, service_type: str, instance: str) -> None:
        emit("down", type=service_type, instance=instance)

    def service_refused(self, name: str, reason: str) -> None:
        emit("refused", name=name, reason=reason)


async def handle(link: ZeroconfLink, cmd: dict[str, Any]) -> bool:
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
    elif op == "quit":
        return False
    else:
        emit("error", error=f"unknown op {op!r}")
    return True


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iface", action="append", default=[])
    ap.add_argument("--type", action="append", default=[])
    ap.add_argument("--always-probe", action="store_true")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr)
    try:
        link = ZeroconfLink(args.iface, always_probe=args.always_probe)
        await link.start(args.type, Printer())
    except LinkError as exc:
        emit("error", error=str(exc))
        return 2
    emit("ready", interfaces=link.interfaces)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
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
