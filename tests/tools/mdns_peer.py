"""A plain python-zeroconf peer (no z2z code) speaking JSON lines, for link tests.

    python mdns_peer.py --iface 10.77.1.1 --type _ipp._tcp

Browses the given types and prints ``resolved`` (name, server, port, raw TXT
rdata as hex, addresses) and ``removed`` events with ``t`` = time.monotonic().
Commands on stdin: ``{"op": "register"|"update", "type", "name", "server",
"port", "txt": [hex...], "addresses": [...]}``, ``{"op": "unregister", "name"}``,
``{"op": "quit"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from zeroconf import DNSQuestionType, ServiceInfo, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


class Peer:
    def __init__(self, aiozc: AsyncZeroconf) -> None:
        self.aiozc = aiozc
        self.infos: dict[str, ServiceInfo] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            emit("removed", type=service_type, name=name)
            return
        task = asyncio.get_running_loop().create_task(self.resolve(service_type, name))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def resolve(self, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        if await info.async_request(self.aiozc.zeroconf, 3000, question_type=DNSQuestionType.QM):
            emit(
                "resolved",
                type=service_type,
                name=info.name,
                server=info.server,
                port=info.port,
                text=info.text.hex(),
                addresses=sorted(info.parsed_addresses()),
            )
        else:
            emit("unresolved", name=name)

    def make_info(self, cmd: dict[str, Any]) -> ServiceInfo:
        # Plain raw TXT: length-prefixed strings, exactly as given.
        text = b"".join(bytes([len(s)]) + s for s in (bytes.fromhex(h) for h in cmd["txt"]))
        return ServiceInfo(
            cmd["type"],
            cmd["name"],
            port=int(cmd["port"]),
            properties=text or b"\x00",
            server=cmd["server"],
            parsed_addresses=cmd["addresses"],
        )

    async def handle(self, cmd: dict[str, Any]) -> bool:
        op = cmd.get("op")
        if op == "register":
            info = self.make_info(cmd)
            await self.aiozc.async_register_service(info)
            self.infos[info.name] = info
            emit("registered", name=info.name)
        elif op == "update":
            info = self.make_info(cmd)
            await self.aiozc.async_update_service(info)
            self.infos[info.name] = info
            emit("updated", name=info.name)
        elif op == "unregister":
            info = self.infos.pop(cmd["name"])
            await self.aiozc.async_unregister_service(info)
            emit("unregistered", name=info.name)
        elif op == "quit":
            return False
        return True


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iface", action="append", default=[], help="interface address")
    ap.add_argument("--type", action="append", default=[], help="fully qualified type to browse")
    args = ap.parse_args()
    aiozc = AsyncZeroconf(interfaces=args.iface)
    await aiozc.zeroconf.async_wait_for_start()
    peer = Peer(aiozc)
    browser = None
    if args.type:
        browser = AsyncServiceBrowser(
            aiozc.zeroconf, args.type, handlers=[peer.on_change], question_type=DNSQuestionType.QM
        )
    emit("ready")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[bool]] = set()
    try:
        while line := await reader.readline():
            cmd = json.loads(line)
            if cmd.get("op") == "quit":
                break
            # Commands run concurrently: registering probes for about a second.
            task = loop.create_task(peer.handle(cmd))
            pending.add(task)
            task.add_done_callback(pending.discard)
    finally:
        await asyncio.gather(*pending, return_exceptions=True)
        if browser is not None:
            await browser.async_cancel()
        await aiozc.async_close()
        emit("closed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
