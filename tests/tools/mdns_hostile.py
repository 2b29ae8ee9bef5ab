#!/usr/bin/env python3
"""A hostile device on the link: raw mDNS announcements no well-behaved stack would send.

python-zeroconf and Avahi refuse to *register* names with NUL or invalid UTF-8,
so this tool builds the packets itself with dnslib (never by hand) and sends
them from port 5353 to 224.0.0.251, as any device on the LAN could.  Every
instance is announced in a packet of its own (PTR, SRV, TXT, A; cache-flush on
the unique records), so one oversized packet does not hide the others.

    mdns_hostile.py --address 10.77.1.10 [--names] [--flap-txt NAME] [--flap-updown NAME]
                    [--period 0.1] [--duration 10] [--repeat 1.0]

- ``--names`` announces `HOSTILE` (below) every ``--repeat`` seconds until stopped.
- ``--flap-txt NAME`` announces NAME with ``state=N`` in its TXT, N changing every
  ``--period`` seconds for ``--duration`` seconds, then ``state=final`` (kept).
- ``--flap-updown NAME`` alternates announcement and goodbye (TTL 0) of NAME every
  ``--period`` seconds for ``--duration`` seconds, then stays announced.

JSON lines on stdout (``t`` = time.time()): ``ready``, ``sent`` (one per instance on
the first round of ``--names``, with its packet size), ``flap-done`` (per flapper,
with the number of changes sent) and ``bye`` (goodbyes sent on SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from dnslib import PTR, QTYPE, RR, SRV, TXT, A, DNSHeader, DNSLabel, DNSRecord

MDNS_GROUP, MDNS_PORT = "224.0.0.251", 5353
CACHE_FLUSH = 0x8001  # class IN with the cache-flush bit (RFC 6762 §10.2)


@dataclass(frozen=True)
class Announced:
    instance: bytes  # the raw label, any bytes
    host: bytes
    txt: tuple[bytes, ...]
    valid: bool  # should a gateway bridge it?
    why: str


def _txt(total: int) -> tuple[bytes, ...]:
    """TXT strings of 250 bytes adding up to about `total` bytes."""
    return tuple(f"k{i:03d}=".encode() + b"v" * 245 for i in range(total // 251))


HOSTILE: tuple[Announced, ...] = (
    Announced(b"Plain Printer", b"plain", (b"rp=ipp/print",), True, "control: nothing odd"),
    Announced(b"Dots.In.The.Name", b"dots", (b"x=1",), True, "dots inside one label"),
    Announced(b"Back\\slash \\. Printer", b"bslash", (b"x=1",), True, "backslashes"),
    Announced(b"L" * 63, b"longest", (b"x=1",), True, "a 63-byte label, the maximum"),
    Announced("Ünïcødé 打印机 ☃".encode(), b"unicode", (b"x=1",), True, "UTF-8"),
    Announced(b"Evil\x00Printer", b"nul", (b"x=1",), False, "NUL in the name"),
    Announced(b"Bad \xff\xfe UTF-8", b"badutf8", (b"x=1",), False, "not UTF-8"),
    Announced(b"Esc\x1b[31mRed", b"escape", (b"x=1",), False, "terminal escape (control chars)"),
    Announced(b"Large TXT", b"largetxt", _txt(6000), False, "6,000-byte TXT: over z2z's 4,096-byte limit"),
    Announced(b"Huge TXT", b"hugetxt", _txt(9000), False, "9,000-byte TXT: a 9 KB packet, IP-fragmented"),
    Announced(b"Odd Host", b"we\x00ird.h\xffost", (b"x=1",), True, "hostile SRV target label"),
)


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def packet(svc_type: str, item: Announced, address: str, port: int, ttl: int) -> bytes:
    type_labels = [lbl.encode() for lbl in svc_type.split(".")] + [b"local"]
    inst = DNSLabel([item.instance, *type_labels])
    host = DNSLabel([item.host, b"local"])
    msg = DNSRecord(DNSHeader(id=0, qr=1, aa=1))
    msg.add_answer(RR(DNSLabel(type_labels), QTYPE.PTR, ttl=ttl, rdata=PTR(inst)))
    msg.add_answer(RR(inst, QTYPE.SRV, CACHE_FLUSH, ttl=ttl, rdata=SRV(0, 0, port, host)))
    msg.add_answer(RR(inst, QTYPE.TXT, CACHE_FLUSH, ttl=ttl, rdata=TXT(list(item.txt) or [b""])))
    msg.add_answer(RR(host, QTYPE.A, CACHE_FLUSH, ttl=ttl, rdata=A(address)))
    return bytes(msg.pack())


def open_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", MDNS_PORT))  # responses must come from 5353 (RFC 6762 §11)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    return sock


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--address", required=True, help="this host's IPv4 address on the link")
    p.add_argument("--type", default="_ipp._tcp")
    p.add_argument("--port", type=int, default=631)
    p.add_argument("--names", action="store_true", help="announce the hostile name set")
    p.add_argument("--flap-txt", action="append", default=[], metavar="NAME")
    p.add_argument("--flap-updown", action="append", default=[], metavar="NAME")
    p.add_argument("--period", type=float, default=0.1)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--repeat", type=float, default=1.0)
    args = p.parse_args(argv)

    sock = open_socket(args.address)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def send(item: Announced, ttl: int = 120) -> int:
        data = packet(args.type, item, args.address, args.port, ttl)
        try:
            sock.sendto(data, (MDNS_GROUP, MDNS_PORT))
        except OSError as exc:
            emit("error", instance=item.instance.hex(), error=str(exc))
        return len(data)

    flappers = [Announced(n.encode(), b"flapper", (b"state=0",), True, "flaps") for n in args.flap_txt]
    blinkers = [Announced(n.encode(), b"blinker", (b"state=up",), True, "flaps") for n in args.flap_updown]
    emit("ready", names=[h.instance.hex() for h in HOSTILE] if args.names else [])
    start = time.monotonic()
    next_round = start
    changes = 0
    first_round = True
    flapping = bool(flappers or blinkers)
    while not stopping:
        now = time.monotonic()
        if flapping and now - start >= args.duration:
            flapping = False
            flappers = [Announced(f.instance, f.host, (b"state=final",), True, "") for f in flappers]
            for item in (*flappers, *blinkers):
                send(item)
            emit("flap-done", changes=changes, names=[*args.flap_txt, *args.flap_updown])
        elif flapping:
            changes += 1
            for item in flappers:
                send(Announced(item.instance, item.host, (f"state={changes}".encode(),), True, ""))
            for item in blinkers:
                send(item, ttl=0 if changes % 2 else 120)
        if now >= next_round:
            for item in HOSTILE if args.names else ():
                size = send(item)
                if first_round:
                    emit("sent", instance=item.instance.hex(), size=size, valid=item.valid, why=item.why)
            if not flapping:  # keep the flappers' final state fresh
                for item in (*flappers, *blinkers):
                    send(item)
            first_round = False
            next_round = now + args.repeat
        time.sleep(args.period if flapping else 0.05)
    for item in (*(HOSTILE if args.names else ()), *flappers, *blinkers):
        send(item, ttl=0)
    emit("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
