#!/usr/bin/env python3
""" "The client on campus B": browse DNS-SD types with python-zeroconf, one JSON line per event.

    {"event": "browsing", "t": ..., "types": [...]}            once, when the browser runs
    {"event": "up", "t": ..., "instance": "Campus Printer", "name": "<full name>",
     "type": "_ipp._tcp.local.", "host": "printer.local.", "port": 631,
     "txt": ["key=value", ...], "addresses": ["10.77.1.10", ...], "t_seen": ...}
    {"event": "update", ...same fields...}                      records of a known instance changed
    {"event": "down", "t": ..., "instance": ..., "name": ..., "type": ...}

``t`` of ``up`` is when the instance was fully resolved (what a user would see);
``t_seen`` is when its PTR first arrived.  ``txt`` keeps the raw strings in wire
order (``txt_raw``: each string's bytes in hex, for bytes that are not UTF-8;
``priority``/``weight``: the SRV's).  Questions are QM (multicast replies): a QU
question may be swallowed by a responder that shares port 5353 with another
stack (Avahi).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

from mdnscommon import add_link_args, decode_txt, emit, interfaces, ip_version, raw_txt
from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

RESOLVE_TRIES = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--type",
        action="append",
        default=[],
        help="service type to browse, e.g. _ipp._tcp (repeatable; default _ipp._tcp)",
    )
    p.add_argument("--resolve-timeout", type=float, default=3.0, help="seconds per resolve attempt")
    add_link_args(p)
    return p.parse_args(argv)


def fqdn_type(service_type: str) -> str:
    t = service_type.rstrip(".")
    return t + "." if t.endswith(".local") else t + ".local."


def instance_of(name: str, service_type: str) -> str:
    """'Campus Printer._ipp._tcp.local.' -> 'Campus Printer'"""
    return name[: -len(service_type) - 1] if name.endswith("." + service_type) else name


class Watcher:
    """Turns browser callbacks into up/update/down lines, resolving before 'up'."""

    def __init__(self, azc: AsyncZeroconf, resolve_timeout: float) -> None:
        self.azc = azc
        self.resolve_timeout_ms = resolve_timeout * 1000
        self.known: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, asyncio.Task[None]] = {}

    def on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """Browser handler; runs on the event loop."""
        key = name.lower()
        if state_change is ServiceStateChange.Removed:
            task = self.pending.pop(key, None)
            if task is not None:
                task.cancel()
            if self.known.pop(key, None) is not None:
                emit(
                    "down",
                    instance=instance_of(name, service_type),
                    name=name,
                    type=service_type,
                )
            return
        old = self.pending.pop(key, None)
        if old is not None:
            old.cancel()
        self.pending[key] = asyncio.ensure_future(self.resolve(service_type, name, time.time()))

    async def resolve(self, service_type: str, name: str, t_seen: float) -> None:
        key = name.lower()
        info = AsyncServiceInfo(service_type, name)
        ok = False
        for _ in range(RESOLVE_TRIES):
            info = AsyncServiceInfo(service_type, name)
            ok = await info.async_request(
                self.azc.zeroconf, self.resolve_timeout_ms, question_type=DNSQuestionType.QM
            )
            if ok:
                break
        self.pending.pop(key, None)
        record = {
            "instance": instance_of(name, service_type),
            "name": name,
            "type": service_type,
            "host": info.server,
            "port": info.port,
            "txt": decode_txt(info.text),
            "txt_raw": raw_txt(info.text),
            "priority": info.priority,
            "weight": info.weight,
            "addresses": info.parsed_addresses(IPVersion.All),
        }
        if not ok:
            emit("unresolved", t_seen=t_seen, **record)
            return
        previous = self.known.get(key)
        if previous == record:
            return
        self.known[key] = record
        emit("up" if previous is None else "update", t_seen=t_seen, **record)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    version = ip_version(args.ip_version)
    types = [fqdn_type(t) for t in (args.type or ["_ipp._tcp"])]
    azc = AsyncZeroconf(interfaces=interfaces(args.interface, version), ip_version=version)
    watcher = Watcher(azc, args.resolve_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    browser = AsyncServiceBrowser(
        azc.zeroconf, types, handlers=[watcher.on_change], question_type=DNSQuestionType.QM
    )
    emit("browsing", types=types)
    try:
        await stop.wait()
    finally:
        await browser.async_cancel()
        for task in watcher.pending.values():
            task.cancel()
        await azc.async_close()
        emit("closed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
