#!/usr/bin/env python3
"""Publish many DNS-SD services at once with avahi-daemon (over D-Bus) or python-zeroconf.

    python corpus_publish.py --stack avahi|zeroconf --address 10.77.1.10 [--address fd77:1::10] SPEC.json

SPEC.json is a list of services::

    {"name": "Living Room [avahi]", "type": "_airplay._tcp", "port": 7000,
     "host": "Living-Room-avahi", "txt": ["acl=0", "hex:62696e3d00ff", ...],
     "subtypes": ["_universal"], "priority": 0, "weight": 0, "ipv6": true}

TXT strings are raw (wire order, duplicates kept; ``hex:`` for bytes that are not
UTF-8).  Each host gets the IPv4 ``--address`` and, when one of its services says
``ipv6``, the IPv6 one.  One JSON line per event on stdout: ``published`` per
service, ``refused`` when the stack cannot publish something the spec asks for
(with the stack's own error), then ``ready``; runs until SIGTERM.

Why here and not through z2z: the interop matrix (tests/e2e/test_interop_matrix_e2e.py)
judges z2z against the stacks themselves, so this talks to each stack's own API:
avahi-daemon's ``EntryGroup`` (``AddService``, ``AddServiceSubtype``, ``AddAddress``)
and python-zeroconf's ``AsyncZeroconf.async_register_service``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mdnscommon import emit, interfaces, ip_version


def raw_txt(entries: list[str]) -> list[bytes]:
    return [bytes.fromhex(e[4:]) if e.startswith("hex:") else e.encode() for e in entries]


def host_addresses(spec: list[dict[str, Any]], v4: str, v6: str | None) -> dict[str, list[str]]:
    """host label -> addresses: IPv4 always, IPv6 when any of its services asks for it."""
    out: dict[str, list[str]] = {}
    for s in spec:
        addrs = out.setdefault(s["host"], [v4])
        if s.get("ipv6") and v6 and v6 not in addrs:
            addrs.append(v6)
    return out


def run_avahi(spec: list[dict[str, Any]], v4: str, v6: str | None, ifname: str) -> None:
    import avahi
    import dbus

    bus = dbus.SystemBus()
    server = dbus.Interface(
        bus.get_object(avahi.DBUS_NAME, avahi.DBUS_PATH_SERVER), avahi.DBUS_INTERFACE_SERVER
    )
    iface = int(server.GetNetworkInterfaceIndexByName(ifname))

    def group() -> Any:
        return dbus.Interface(
            bus.get_object(avahi.DBUS_NAME, server.EntryGroupNew()), avahi.DBUS_INTERFACE_ENTRY_GROUP
        )

    groups: list[tuple[str, Any]] = []
    for host, addrs in host_addresses(spec, v4, v6).items():
        g = group()
        for addr in addrs:  # NO_REVERSE: several host names share the address
            g.AddAddress(
                iface, avahi.PROTO_UNSPEC, dbus.UInt32(avahi.PUBLISH_NO_REVERSE), f"{host}.local", addr
            )
        g.Commit()
        groups.append((f"host {host}", g))
    for s in spec:
        if s.get("priority") or s.get("weight"):
            # EntryGroup.AddService has no priority/weight arguments (signature iiussssqaay).
            emit("refused", name=s["name"], what="srv", error="AddService has no priority/weight")
        g = group()
        txt = dbus.Array([dbus.ByteArray(t) for t in raw_txt(s["txt"])], signature="ay")
        g.AddService(iface, avahi.PROTO_UNSPEC, dbus.UInt32(0), s["name"], s["type"], "",
                     f"{s['host']}.local", dbus.UInt16(s["port"]), txt)  # fmt: skip
        for sub in s.get("subtypes", []):
            g.AddServiceSubtype(iface, avahi.PROTO_UNSPEC, dbus.UInt32(0), s["name"], s["type"], "",
                                f"{sub}._sub.{s['type']}")  # fmt: skip
        g.Commit()
        groups.append((s["name"], g))
    deadline = time.monotonic() + 30
    pending = dict(groups)
    while pending and time.monotonic() < deadline:
        for name, g in list(pending.items()):
            state = int(g.GetState())
            if state == avahi.ENTRY_GROUP_ESTABLISHED:
                del pending[name]
                if not name.startswith("host "):
                    emit("published", name=name)
            elif state in (avahi.ENTRY_GROUP_COLLISION, avahi.ENTRY_GROUP_FAILURE):
                del pending[name]
                emit("error", name=name, state=state)
        time.sleep(0.1)
    for name in pending:
        emit("error", name=name, error="not established in 30 s")
    emit("ready")
    stop = {"now": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.update(now=True))
    while not stop["now"]:
        time.sleep(0.2)
    for _, g in groups:
        g.Free()
    emit("closed")


async def run_zeroconf(spec: list[dict[str, Any]], v4: str, v6: str | None, ifname: str) -> None:
    from zeroconf import ServiceNameAlreadyRegistered
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    version = ip_version("all")
    azc = AsyncZeroconf(interfaces=interfaces([ifname], version), ip_version=version)
    hosts = host_addresses(spec, v4, v6)
    infos: list[AsyncServiceInfo] = []

    def info_of(s: dict[str, Any], service_type: str) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            f"{service_type}.local.",
            f"{s['name']}.{s['type']}.local.",
            port=s["port"],
            priority=s.get("priority", 0),
            weight=s.get("weight", 0),
            properties=b"".join(bytes([len(t)]) + t for t in raw_txt(s["txt"])) or b"\x00",
            server=f"{s['host']}.local.",
            parsed_addresses=hosts[s["host"]],
        )

    async def one(s: dict[str, Any]) -> None:
        info = info_of(s, s["type"])
        await (await azc.async_register_service(info))
        infos.append(info)
        emit("published", name=s["name"])
        for sub in s.get("subtypes", []):
            # python-zeroconf files a ServiceInfo under one type (ServiceRegistry.types): the
            # subtype is a second registration of the same name, which it refuses.
            try:
                await (await azc.async_register_service(info_of(s, f"{sub}._sub.{s['type']}")))
                emit("published", name=s["name"], subtype=sub)
            except ServiceNameAlreadyRegistered as exc:
                emit("refused", name=s["name"], what="subtypes", error=type(exc).__name__)

    await asyncio.gather(*(one(s) for s in spec))
    emit("ready")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for info in infos:
        await (await azc.async_unregister_service(info))
    await azc.async_close()
    emit("closed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stack", choices=("avahi", "zeroconf"), required=True)
    p.add_argument("--address", action="append", required=True, help="IPv4 and optionally IPv6 address")
    p.add_argument("--interface", default="lan0")
    p.add_argument("spec", type=Path)
    args = p.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    v4 = next(a for a in args.address if ":" not in a)
    v6 = next((a for a in args.address if ":" in a), None)
    if args.stack == "avahi":
        run_avahi(spec, v4, v6, args.interface)
    else:
        asyncio.run(run_zeroconf(spec, v4, v6, args.interface))
    return 0


if __name__ == "__main__":
    sys.exit(main())
