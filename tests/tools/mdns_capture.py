#!/usr/bin/env python3
"""Capture mDNS packets on a link and print their names as raw labels, parsed with dnslib.

    python mdns_capture.py --interface lan0 [--source 10.77.2.1]

Not python-zeroconf: a plain UDP socket on port 5353 (SO_REUSEPORT, so it sits
beside avahi-daemon) joined to 224.0.0.251, and dnslib for the wire format.  One
JSON line per record in every packet (questions, answers, authority, additional):

    {"event": "ready", "t": ...}
    {"event": "rr", "t": ..., "src": "10.77.2.1", "packet": 7, "section": "an", "rtype": "PTR",
     "name": ["_ipp", "_tcp", "local"], "target": ["Room 2.14 Printer", "_ipp", "_tcp", "local"]}

With ``--packets``, also one line per packet (before its records), for counting
what a link carries:

    {"event": "packet", "t": ..., "src": "10.77.1.2", "bytes": 312,
     "names": ["_z2z._udp.local", "z2z-…._z2z._udp.local", ...]}

Labels are decoded as UTF-8 (undecodable bytes as \\xNN escapes), so one label
with a dot inside stays one list item.  ``target`` is the name inside PTR and
SRV rdata; SRV also has ``port``.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import sys
import time
from typing import Any

import ifaddr
from dnslib import PTR, QTYPE, SRV, DNSLabel, DNSRecord

GROUP = "224.0.0.251"
PORT = 5353


def labels(name: DNSLabel) -> list[str]:
    return [bytes(lbl).decode("utf-8", "backslashreplace") for lbl in name.label]


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


def ipv4_of(ifname: str) -> str:
    for adapter in ifaddr.get_adapters():
        if adapter.name == ifname:
            for ip in adapter.ips:
                if ip.is_IPv4:
                    return str(ip.ip)
    raise SystemExit(f"no IPv4 address on {ifname}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--interface", default="lan0")
    p.add_argument("--source", action="append", default=[], help="only packets from this address")
    p.add_argument("--packets", action="store_true", help="one 'packet' line per packet too (size, names)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", PORT))
    local = ipv4_of(args.interface)
    sock.setsockopt(
        socket.IPPROTO_IP,
        socket.IP_ADD_MEMBERSHIP,
        struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(local)),
    )
    emit("ready", interface=args.interface, address=local)
    number = 0  # each record line says which packet it came in ("packet")
    while True:
        data, (src, _port) = sock.recvfrom(9000)
        number += 1
        if args.source and src not in args.source:
            continue
        try:
            msg = DNSRecord.parse(data)
        except Exception as exc:
            emit("unreadable", src=src, error=str(exc), hex=data.hex())
            continue
        if args.packets:
            names = {str(q.qname) for q in msg.questions}
            for rr in (*msg.rr, *msg.auth, *msg.ar):
                names.add(str(rr.rname))
                if isinstance(rr.rdata, PTR):
                    names.add(str(rr.rdata.label))
            emit("packet", src=src, packet=number, bytes=len(data), names=sorted(names))
        for q in msg.questions:
            emit("rr", src=src, packet=number, section="qd", rtype=rtype_name(q.qtype), name=labels(q.qname))
        for section, rrs in (("an", msg.rr), ("ns", msg.auth), ("ar", msg.ar)):
            for rr in rrs:
                fields: dict[str, Any] = {"name": labels(rr.rname), "ttl": rr.ttl}
                if isinstance(rr.rdata, PTR):
                    fields["target"] = labels(rr.rdata.label)
                elif isinstance(rr.rdata, SRV):
                    fields["target"] = labels(rr.rdata.target)
                    fields["port"] = rr.rdata.port
                emit("rr", src=src, packet=number, section=section, rtype=rtype_name(rr.rtype), **fields)


def rtype_name(rtype: int) -> str:
    try:
        return str(QTYPE[rtype])
    except Exception:
        return str(rtype)


if __name__ == "__main__":
    sys.exit(main())
