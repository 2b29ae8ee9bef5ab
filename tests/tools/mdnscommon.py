"""Shared bits of the mDNS test tools: interface choice, TXT codec, JSON output.

The tools run inside a network namespace as plain scripts (``python
tests/tools/mdns_watch.py``), so this module is imported as a sibling, not as
part of a package.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import ifaddr
from zeroconf import InterfaceChoice, IPVersion

DEFAULT_IFNAME = "lan0"


def add_link_args(parser: argparse.ArgumentParser) -> None:
    """Options that pick where the tool speaks mDNS."""
    parser.add_argument(
        "--interface",
        action="append",
        default=[],
        metavar="IFNAME",
        help=f"interface to use (repeatable); default {DEFAULT_IFNAME} if present, else all",
    )
    parser.add_argument(
        "--ip-version",
        choices=("4", "6", "all"),
        default="all",
        help="address families to speak mDNS on (default: all)",
    )


def ip_version(arg: str) -> IPVersion:
    return {"4": IPVersion.V4Only, "6": IPVersion.V6Only, "all": IPVersion.All}[arg]


def interfaces(names: Sequence[str], version: IPVersion) -> list[str | int] | InterfaceChoice:
    """Map interface names to what python-zeroconf wants.

    python-zeroconf picks IPv4 interfaces by address and IPv6 ones by index, never
    by name; a namespace host has `lo` and `lan0`, and mDNS on `lo` only adds noise.
    """
    adapters = {a.nice_name: a for a in ifaddr.get_adapters()}
    if not names:
        if DEFAULT_IFNAME not in adapters:
            return InterfaceChoice.All
        names = [DEFAULT_IFNAME]
    chosen: list[str | int] = []
    for name in names:
        adapter = adapters.get(name)
        if adapter is None:
            raise SystemExit(f"no such interface: {name}")
        if version != IPVersion.V6Only:
            chosen += [ip.ip for ip in adapter.ips if isinstance(ip.ip, str)]
        if version != IPVersion.V4Only and any(isinstance(ip.ip, tuple) for ip in adapter.ips):
            chosen.append(socket.if_nametoindex(name))
    if not chosen:
        raise SystemExit(f"no usable addresses on {', '.join(names)}")
    return chosen


def encode_txt(entries: Iterable[str]) -> bytes:
    """TXT rdata from raw strings, order and duplicates kept (RFC 6763 §6)."""
    out = bytearray()
    for entry in entries:
        raw = entry.encode()
        if len(raw) > 255:
            raise SystemExit(f"TXT string longer than 255 bytes: {entry[:20]}...")
        out += bytes([len(raw)]) + raw
    return bytes(out) or b"\x00"


def decode_txt(rdata: bytes | None) -> list[str]:
    """Raw TXT strings in wire order; the lone empty string of an empty TXT is dropped."""
    entries: list[str] = []
    data = rdata or b""
    i = 0
    while i < len(data):
        n = data[i]
        entries.append(data[i + 1 : i + 1 + n].decode("utf-8", "backslashreplace"))
        i += 1 + n
    return [] if entries == [""] else entries


def raw_txt(rdata: bytes | None) -> list[str]:
    """Raw TXT strings in wire order as hex (bytes exact); the lone empty string is dropped."""
    entries: list[str] = []
    data = rdata or b""
    i = 0
    while i < len(data):
        n = data[i]
        entries.append(data[i + 1 : i + 1 + n].hex())
        i += 1 + n
    return [] if entries == [""] else entries


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout, flushed at once: tests and benchmarks parse these."""
    record = {"event": event, "t": fields.pop("t", None) or time.time(), **fields}
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
