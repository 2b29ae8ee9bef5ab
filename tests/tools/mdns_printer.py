#!/usr/bin/env python3
""" "The printer": publish a DNS-SD service with python-zeroconf inside a namespace.

One JSON line per event on stdout, each with a ``time.time()`` stamp ``t`` so that
tests and benchmarks can time what a browser on another campus sees (namespaces
share the machine clock):

    {"event": "registered", "t": ..., "name": "Campus Printer", ...}
    {"event": "unregistered", "t": ..., "name": "Campus Printer"}

``t`` of ``registered`` is taken when probing is over and the first announcement
is handed to the socket; ``t`` of ``unregistered`` when the first goodbye is.

Plain mode registers ``--name`` at once and withdraws it (goodbye) on SIGTERM or
SIGINT.  ``--control`` mode also reads commands from stdin, so a benchmark can
time many announce/goodbye cycles without paying for a process start each time:

    register NAME         announce another instance (same type, host, port, TXT)
    unregister NAME       goodbye for it
    {"cmd": "update", "name": NAME, "txt": ["k=v", ...], "port": 632}
                          change TXT and/or port of a registered instance
    burst N PREFIX        announce N instances PREFIX0000 … at once (a busy link's burst)
    quit                  withdraw everything and exit (so does end of input)

Lines starting with ``{`` are JSON commands; ``cmd`` may also be ``register`` or
``unregister``.  Errors are reported as ``{"event": "error", ...}`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

import ifaddr
from mdnscommon import add_link_args, emit, encode_txt, interfaces, ip_version
from zeroconf import NonUniqueNameException
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--name", help="instance name, e.g. 'Campus Printer'")
    p.add_argument("--type", default="_ipp._tcp", help="service type (default _ipp._tcp)")
    p.add_argument("--port", type=int, default=631)
    p.add_argument(
        "--txt",
        action="append",
        default=[],
        metavar="STRING",
        help="raw TXT string such as key=value (repeatable, order kept)",
    )
    p.add_argument(
        "--address",
        action="append",
        default=[],
        help="address for the host record (repeatable); default: the interface's addresses",
    )
    p.add_argument("--host", default="printer", help="host label; '.local.' is added")
    p.add_argument("--priority", type=int, default=0, help="SRV priority (RFC 2782)")
    p.add_argument("--weight", type=int, default=0, help="SRV weight (RFC 2782)")
    p.add_argument("--no-probe", action="store_true", help="skip probing (faster announce)")
    p.add_argument("--control", action="store_true", help="also read commands from stdin")
    add_link_args(p)
    args = p.parse_args(argv)
    if not args.control and not args.name:
        p.error("--name is required unless --control is given")
    return args


def fqdn_type(service_type: str) -> str:
    """'_ipp._tcp' -> '_ipp._tcp.local.'"""
    t = service_type.rstrip(".")
    return t + "." if t.endswith(".local") else t + ".local."


def interface_addresses(chosen: list[str | int] | Any) -> list[str]:
    """Addresses to publish when none were given: what the chosen interfaces carry.

    Link-local IPv6 is left out: it is useless off the link, which is what a
    gateway test wants to notice if it ever leaks.
    """
    indexes = {c for c in chosen if isinstance(c, int)} if isinstance(chosen, list) else set()
    v4 = {c for c in chosen if isinstance(c, str)} if isinstance(chosen, list) else set()
    out: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and (ip.ip in v4 or not isinstance(chosen, list)):
                if not ip.ip.startswith("127."):
                    out.append(ip.ip)
            elif isinstance(ip.ip, tuple) and (adapter.index in indexes or not isinstance(chosen, list)):
                addr = ip.ip[0]
                if not addr.lower().startswith("fe80") and addr != "::1":
                    out.append(addr)
    return out


class Printer:
    """Registers and withdraws instances that share one host, type, port and TXT."""

    def __init__(self, args: argparse.Namespace, azc: AsyncZeroconf, addresses: list[str]) -> None:
        self.args = args
        self.azc = azc
        self.type = fqdn_type(args.type)
        self.server = args.host.rstrip(".").removesuffix(".local") + ".local."
        self.addresses = addresses
        self.infos: dict[str, AsyncServiceInfo] = {}

    def _info(self, name: str, txt: list[str], port: int) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            self.type,
            f"{name}.{self.type}",
            port=port,
            priority=self.args.priority,
            weight=self.args.weight,
            properties=encode_txt(txt),
            server=self.server,
            parsed_addresses=self.addresses,
        )

    async def register(self, name: str) -> None:
        if name in self.infos:
            emit("error", error="already registered", name=name)
            return
        info = self._info(name, list(self.args.txt), self.args.port)
        t0 = time.time()
        try:
            announced = await self.azc.async_register_service(info, cooperating_responders=self.args.no_probe)
        except NonUniqueNameException:
            emit("error", error="name conflict", name=name)
            return
        # The first announcement is sent on the next loop turn: stamp it now.
        t = time.time()
        self.infos[name] = info
        emit(
            "registered",
            t=t,
            name=name,
            fullname=info.name,
            type=self.type,
            host=self.server,
            port=info.port,
            txt=list(self.args.txt),
            addresses=self.addresses,
            probe_s=round(t - t0, 6),
        )
        await announced

    async def unregister(self, name: str) -> None:
        info = self.infos.pop(name, None)
        if info is None:
            emit("error", error="not registered", name=name)
            return
        goodbye = await self.azc.async_unregister_service(info)
        emit("unregistered", t=time.time(), name=name, fullname=info.name)
        await goodbye

    async def update(self, name: str, txt: list[str] | None, port: int | None) -> None:
        old = self.infos.get(name)
        if old is None:
            emit("error", error="not registered", name=name)
            return
        info = self._info(
            name,
            txt if txt is not None else list(self.args.txt),
            port if port is not None else (old.port or self.args.port),
        )
        self.infos[name] = info
        sent = await self.azc.async_update_service(info)
        emit("updated", t=time.time(), name=name, port=info.port, txt=txt)
        await sent

    async def close(self) -> None:
        for name in list(self.infos):
            await self.unregister(name)


async def control_loop(printer: Printer, stop: asyncio.Event) -> None:
    """Serve stdin commands until 'quit' or end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit("ready")
    while not stop.is_set():
        raw = await reader.readline()
        if not raw:
            break
        line = raw.decode().strip()
        if not line:
            continue
        try:
            if line.startswith("{"):
                cmd: dict[str, Any] = json.loads(line)
            else:
                verb, _, rest = line.partition(" ")
                cmd = {"cmd": verb, "name": rest.strip()}
            verb = cmd.get("cmd", "")
            if verb == "quit":
                break
            name = str(cmd.get("name", ""))
            if not name:
                raise ValueError("missing name")
            if verb == "burst":
                count, _, prefix = name.partition(" ")
                await asyncio.gather(*(printer.register(f"{prefix}{i:04d}") for i in range(int(count))))
                emit("burst-done", count=int(count), prefix=prefix)
            elif verb == "register":
                await printer.register(name)
            elif verb == "unregister":
                await printer.unregister(name)
            elif verb == "update":
                await printer.update(name, cmd.get("txt"), cmd.get("port"))
            else:
                raise ValueError(f"unknown command {verb!r}")
        except (ValueError, json.JSONDecodeError) as exc:
            emit("error", error=str(exc), line=line)
    stop.set()


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    version = ip_version(args.ip_version)
    chosen = interfaces(args.interface, version)
    addresses = args.address or interface_addresses(chosen)
    azc = AsyncZeroconf(interfaces=chosen, ip_version=version)
    printer = Printer(args, azc, addresses)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    control: asyncio.Task[None] | None = None
    try:
        if args.name:
            await printer.register(args.name)
        if args.control:
            control = asyncio.create_task(control_loop(printer, stop))
        await stop.wait()
    finally:
        if control is not None:
            control.cancel()
        await printer.close()
        await azc.async_close()
        emit("closed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
