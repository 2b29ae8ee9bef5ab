"""Fuzz target: the unicast DNS-SD server's query parser and answerer (`DnsSdZone.answer`).

`answer` must never raise (it returns None for what it drops); an exception it
had to swallow is logged at ERROR by the zone and counts as a crash here.  An
answer must echo the query id, be a response, and fit the transport's limit.
"""

from __future__ import annotations

import logging

from common import fuzz, instrumented

with instrumented():
    from dnslib import EDNS0, QTYPE, DNSRecord

    from z2z.adapters.dns import DnsSdZone
    from z2z.core.records import Service


class _Fail(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            raise AssertionError(f"DnsSdZone.answer swallowed an exception: {record.getMessage()}")


logging.getLogger("z2z.adapters.dns.server").addHandler(_Fail())
logging.getLogger("z2z.adapters.dns.server").propagate = False

SERVICES = [
    Service("_ipp._tcp", "Campus Printer", "printer", 631, (b"rp=ipp/print",), ("10.1.0.9", "2001:db8::9")),
    Service("_ipp._tcp", "Dotted.Name \\ x", "printer", 632, (), ("10.1.0.9",)),
    Service("_daap._tcp", "Music", "nas", 3689, (b"x" * 200,) * 10, ("10.1.0.20",)),
]
ZONE = DnsSdZone("z2z.home.arpa.", SERVICES, browse_prefixes=("10.1.0.0/24", "2001:db8::/64"))


def one_input(data: bytes) -> None:
    for limit in (512, 65535):
        out = ZONE.answer(data, limit)
        if out is None:
            continue
        assert out[:2] == data[:2] and out[2] & 0x80, "not a response to this query"
        assert len(out) <= max(limit, ZONE.max_udp_payload), len(out)


def seeds() -> list[bytes]:
    out = []
    for name, qtype in (
        ("_ipp._tcp.z2z.home.arpa.", "PTR"),
        ("Campus Printer._ipp._tcp.z2z.home.arpa.", "SRV"),
        ("printer.z2z.home.arpa.", "AAAA"),
        ("b._dns-sd._udp.z2z.home.arpa.", "PTR"),
        ("_services._dns-sd._udp.z2z.home.arpa.", "PTR"),
        ("z2z.home.arpa.", "SOA"),
        ("example.org.", "A"),
        ("_daap._tcp.z2z.home.arpa.", "ANY"),
    ):
        q = DNSRecord.question(name, qtype)
        out.append(bytes(q.pack()))
        q.add_ar(EDNS0(udp_len=4096))
        out.append(bytes(q.pack()))
    out.append(bytes(DNSRecord.question("z2z.home.arpa.", QTYPE[252]).pack()))
    return out


if __name__ == "__main__":
    fuzz(one_input, seeds)
