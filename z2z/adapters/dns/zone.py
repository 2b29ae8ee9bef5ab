"""Unicast DNS-SD zone: lets dig, ``avahi-browse -d DOMAIN`` and ``dns-sd`` see what a gateway knows.

Two halves, in the sans-I/O style of the rest of z2z:

* `DnsSdZone` is pure: services in, DNS answers out (bytes → bytes).  It owns the
  record set of one domain, the RFC 6763 / RFC 8766 answering rules, UDP
  truncation and a cache of encoded answers.  It never touches a socket or a clock,
  so every rule is unit-tested in microseconds.
* `DnsSdServer` is a thin asyncio front (one UDP endpoint and one TCP listener on
  the same address and port) that hands each datagram or TCP frame to the zone.

Choices worth knowing (and tested in tests/unit/adapters/test_dns_server.py):

* Packets that are responses (QR=1) or that dnslib cannot parse are dropped
  (``answer`` returns None): answering garbage only helps reflection attacks.
* A query with more or fewer than one question gets FORMERR (RFC 9619 makes
  QDCOUNT=1 the rule); opcodes other than QUERY get NOTIMP; zone transfers and
  names outside the domain get REFUSED; an EDNS version above 0 gets BADVERS.
* The fast path parses only the header, the question (uncompressed, as every
  client sends it) and an optional OPT record, then serves a cached encoding with
  the query's id and question bytes (hence its letter case) patched in.
  Everything else takes the dnslib path and is answered without caching.
* UDP answers fit 512 bytes, or the query's EDNS0 size capped at `max_udp_payload`
  (default 1232, the DNS flag day size); TCP answers fit 65535.  TTLs are capped
  at 9 s: RFC 8766 §5.5.1 says at most 10 s, and a resolver whose cache clock
  counts whole seconds (Unbound) keeps a 9 s answer 9 to 10 s, a 10 s one up to 11.

Use (the runtime owns the zone and calls ``update`` whenever its view changes)::

    zone = DnsSdZone("campus.example.", services)  # records.Service values
    server = DnsSdServer(zone, *parse_listen("127.0.0.1:5353"))
    await server.start()  # server.port: the bound port (useful with port 0)
    zone.update(services)  # new queries see the new set at once
    await server.close()
"""

from __future__ import annotations

import ipaddress
import logging
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from dnslib import AAAA, NS, PTR, RR, SOA, A, DNSLabel, DNSQuestion, DNSRecord
from dnslib.label import DNSBuffer

from z2z.core.records import RecordError, Service, normalize_type, service_to_rrs, validate

log = logging.getLogger(__name__)

# RR types and classes used here (numbers, so the hot path compares ints).
T_A, T_NS, T_SOA, T_PTR, T_TXT, T_AAAA, T_SRV, T_OPT = 1, 2, 6, 12, 16, 28, 33, 41
T_TKEY, T_TSIG, T_IXFR, T_AXFR, T_MAILB, T_MAILA, T_ANY = 249, 250, 251, 252, 253, 254, 255
C_IN, C_ANY = 1, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS = 0, 1, 2, 3, 4, 5, 16

UDP_MAX = 512  # RFC 1035 limit for a UDP answer when the query carries no EDNS0 OPT
TCP_MAX = 65535  # a TCP frame length is 16 bits
# RFC 8766 §5.5.1: a discovery proxy caps TTLs at no more than 10 s.  9, not 10: Unbound's
# cache clock counts whole seconds, so it keeps a TTL-n answer n to n + 1 s; with 9 a change
# reaches a client behind it within 10 s (docs/performance.md, "Freshness"), for ~11 % more
# resolver queries than with 10.
DEFAULT_TTL_CAP = 9
DEFAULT_EDNS_PAYLOAD = 1232  # DNS flag day 2020: avoids IP fragmentation on real paths

Name = tuple[bytes, ...]  # lower-cased raw labels, leftmost first, no root label
_DOMAIN_LABEL = re.compile(rb"^[A-Za-z0-9_-]{1,63}$")


def _lower(labels: Iterable[bytes]) -> Name:
    """Case-fold labels the DNS way: ASCII only, other bytes compare raw (RFC 4343)."""
    return tuple(bytes(lbl).lower() for lbl in labels)


def _absolute_labels(text: str, what: str) -> tuple[bytes, ...]:
    """Labels of a presentation-format name; ValueError if it cannot be a DNS name."""
    try:
        labels = DNSLabel(text.strip()).label
    except (UnicodeError, ValueError) as exc:
        raise ValueError(f"{what} {text!r} is not a DNS name: {exc}") from None
    if any(not 0 < len(lbl) <= 63 for lbl in labels) or sum(len(lbl) + 1 for lbl in labels) + 1 > 255:
        raise ValueError(f"{what} {text!r} is not a DNS name (empty or over-long label)")
    return tuple(labels)


def browse_zones(prefixes: Iterable[str]) -> tuple[str, ...]:
    """``_dns-sd._udp.<reverse>.`` for each prefix: where RFC 6763 §11 clients look.

    A client computes its subnet's address with the host bits zeroed and asks under
    that address's reverse-mapping name (``b._dns-sd._udp.0.2.88.10.in-addr.arpa.``
    for 10.88.2.0/24); the stdlib's `reverse_pointer` writes that name.
    ValueError (naming the prefix) for anything that is not an IP prefix.
    """
    out: dict[str, None] = {}
    for text in prefixes:
        try:
            net = ipaddress.ip_network(str(text).strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"browse prefix {text!r} is not an IP prefix: {exc}") from None
        out[f"_dns-sd._udp.{net.network_address.reverse_pointer}."] = None
    return tuple(out)


class DnsSdZone:
    """The DNS-SD records of one unicast domain, answering raw DNS queries.

    Feed it `Service` values (`update`); it serves, per RFC 6763 and RFC 8766:
    PTR ``<type>.<domain>`` (with SRV/TXT/A/AAAA as additional records), SRV/TXT
    (and ANY) of ``<instance>.<type>.<domain>``, A/AAAA of ``<host>.<domain>``,
    the ``b``/``db``/``lb._dns-sd._udp`` browse-domain PTRs, the
    ``_services._dns-sd._udp`` type enumeration, and SOA/NS at the apex.  Negative
    answers carry the SOA (RFC 2308).  All TTLs are capped at `max_ttl`.

    `browse_prefixes` (``10.77.2.0/24``, ``fd77:2::/64``) are the subnets whose
    clients should find this domain by themselves (RFC 6763 §11): the zone also
    serves ``b``/``db``/``lb._dns-sd._udp.<reverse of the prefix>`` → the domain,
    each ``_dns-sd._udp.<reverse>`` being a small zone of its own (SOA, NS) so that
    a campus resolver can forward or delegate exactly that name.  Every other name
    of the reverse trees is refused: this is not the reverse zone's server.

    `nameserver` is the NS target (default ``ns.<domain>``); when it lies inside
    the domain, give `nameserver_addresses` so that the name resolves.
    `max_udp_payload` caps the EDNS0 size a client may ask for and is what the
    server advertises.  Services that fail `records.validate` are skipped and
    counted in `rejected`.
    """

    def __init__(
        self,
        domain: str,
        services: Iterable[Service] = (),
        *,
        ttl: int = 120,
        max_ttl: int = DEFAULT_TTL_CAP,
        nameserver: str | None = None,
        nameserver_addresses: Iterable[str] = (),
        hostmaster: str | None = None,
        max_udp_payload: int = DEFAULT_EDNS_PAYLOAD,
        cache_size: int = 4096,
        serial: int = 1,
        browse_prefixes: Iterable[str] = (),
    ) -> None:
        labels = _absolute_labels(domain, "domain")
        if not labels:
            raise ValueError("refusing to serve the root zone: give a domain such as 'campus.example.'")
        if not all(_DOMAIN_LABEL.match(lbl) for lbl in labels):
            raise ValueError(f"domain {domain!r}: use letters, digits, '-' and '_' only")
        self._apex: Name = _lower(labels)
        self.domain = ".".join(lbl.decode("ascii") for lbl in self._apex) + "."
        self.ttl = max(0, min(ttl, max_ttl))
        self.max_udp_payload = max(UDP_MAX, min(max_udp_payload, TCP_MAX))
        self.cache_size = cache_size
        self.serial = serial
        self._ns = _absolute_labels(nameserver or f"ns.{self.domain}", "nameserver")
        self._ns_addresses = tuple(str(ipaddress.ip_address(a)) for a in nameserver_addresses)
        self._hostmaster = _absolute_labels(hostmaster or f"hostmaster.{self.domain}", "hostmaster")
        self.browse_zones = browse_zones(browse_prefixes)
        # Longest first, so a name is matched to the most specific zone that holds it.
        self._zones: tuple[Name, ...] = tuple(
            sorted(
                {self._apex, *(_lower(DNSLabel(z).label) for z in self.browse_zones)},
                key=len,
                reverse=True,
            )
        )
        self._soas: dict[Name, RR] = {}
        self._rrsets: dict[Name, dict[int, list[RR]]] = {}
        self._names: set[Name] = set()
        self._cache: dict[tuple[Any, ...], bytes] = {}
        self.services: tuple[Service, ...] = ()
        self.rejected = 0
        self.queries = 0
        self.cache_hits = 0
        self.dropped = 0
        self.update(services, _bump=False)

    # -- building the record set ---------------------------------------------------------------

    def update(self, services: Iterable[Service], *, _bump: bool = True) -> None:
        """Replace the whole record set by `services` and forget every cached answer.

        Rebuilding is simpler and safer than patching: the runtime calls this when
        its view of services changes, which is rare next to queries.
        """
        chosen: dict[tuple[str, bytes], Service] = {}
        rejected = 0
        for svc in services:
            try:
                svc = validate(svc)
                stype = normalize_type(svc.type)
                addresses = tuple(str(ipaddress.ip_address(a)) for a in svc.addresses)
                if not 0 < len(svc.host.encode("utf-8")) <= 63 or "." in svc.host:
                    raise RecordError(f"bad host label {svc.host!r}")
            except (RecordError, ValueError) as exc:
                log.debug("zone %s: skipping %r: %s", self.domain, svc, exc)
                rejected += 1
                continue
            svc = replace(svc, type=stype, addresses=addresses)
            chosen[(stype, svc.instance.encode("utf-8").lower())] = svc  # last one wins

        if _bump:
            self.serial = (self.serial + 1) & 0xFFFFFFFF or 1
        rrsets: dict[Name, dict[int, list[RR]]] = {}
        seen: set[tuple[Name, int, str]] = set()

        def add(rr: RR) -> None:
            owner = _lower(rr.rname.label)
            mark = (owner, rr.rtype, repr(rr.rdata))
            if mark in seen:  # several services on one host share its A/AAAA
                return
            seen.add(mark)
            rr.ttl = min(rr.ttl, self.ttl)
            rrsets.setdefault(owner, {}).setdefault(rr.rtype, []).append(rr)

        ttl = self.ttl
        soas: dict[Name, RR] = {}
        ns, hostmaster = DNSLabel(list(self._ns)), DNSLabel(list(self._hostmaster))
        for zone_apex in self._zones:
            origin = DNSLabel(list(zone_apex))
            soa = RR(
                origin,
                T_SOA,
                ttl=ttl,
                # refresh, retry, expire, minimum (= negative-caching TTL, RFC 2308)
                rdata=SOA(ns, hostmaster, (self.serial, 60, 30, 3600, ttl)),
            )
            soas[zone_apex] = soa
            add(soa)
            add(RR(origin, T_NS, ttl=ttl, rdata=NS(ns)))
        apex = DNSLabel(list(self._apex))
        if _lower(self._ns)[-len(self._apex) :] == self._apex:
            for a in self._ns_addresses:
                v4 = ipaddress.ip_address(a).version == 4
                add(
                    RR(
                        DNSLabel(list(self._ns)),
                        T_A if v4 else T_AAAA,
                        ttl=ttl,
                        rdata=A(a) if v4 else AAAA(a),
                    )
                )
        # RFC 6763 §11: this domain is worth browsing, asked under the domain itself
        # and under the reverse-mapping domains of the subnets it serves.
        for browse in (b"b", b"db", b"lb"):
            add(RR(DNSLabel([browse, b"_dns-sd", b"_udp", *self._apex]), T_PTR, ttl=ttl, rdata=PTR(apex)))
            for zone_apex in self._zones:
                if zone_apex != self._apex:
                    add(RR(DNSLabel([browse, *zone_apex]), T_PTR, ttl=ttl, rdata=PTR(apex)))
        types: list[str] = []
        for svc in sorted(chosen.values(), key=lambda s: (s.type, s.instance.encode("utf-8").lower())):
            if svc.type not in types:
                types.append(svc.type)
                type_name = DNSLabel([*(t.encode() for t in svc.type.split(".")), *self._apex])
                meta = DNSLabel([b"_services", b"_dns-sd", b"_udp", *self._apex])
                add(RR(meta, T_PTR, ttl=ttl, rdata=PTR(type_name)))  # RFC 6763 §9
            for rr in service_to_rrs(svc, ttl=ttl, domain=self.domain):
                add(rr)

        names: set[Name] = set()
        for owner in rrsets:  # every ancestor down to its zone's apex exists (empty non-terminals)
            holder = self._zone_of(owner) or ()
            for i in range(len(owner) - len(holder) + 1):
                names.add(owner[i:])
        self._rrsets, self._names, self._soas = rrsets, names, soas
        self.services = tuple(chosen.values())
        self.rejected = rejected
        self._cache.clear()

    def _zone_of(self, name: Name) -> Name | None:
        """The apex of the zone (the domain or a reverse browse zone) holding `name`, if any."""
        for zone_apex in self._zones:
            if len(name) >= len(zone_apex) and name[len(name) - len(zone_apex) :] == zone_apex:
                return zone_apex
        return None

    def records(self) -> list[RR]:
        """Every resource record the zone serves (for status pages and debugging)."""
        return [rr for node in self._rrsets.values() for rrset in node.values() for rr in rrset]

    # -- answering -----------------------------------------------------------------------------

    def answer(self, query_wire: bytes, max_size: int = UDP_MAX) -> bytes | None:
        """The response to one DNS message, or None to send nothing.

        `max_size` is the transport's limit without EDNS0: 512 for UDP (raised to the
        query's OPT payload size, capped at `max_udp_payload`), 65535 for TCP.  Never
        raises: a bug on odd input must not take the server down.
        """
        self.queries += 1
        try:
            if type(query_wire) is not bytes:  # bytearray/memoryview: keys and slices must be bytes
                query_wire = bytes(query_wire)
            if len(query_wire) < 12 or query_wire[2] & 0x80:  # too short for a header, or a response
                self.dropped += 1
                return None
            quick = self._quick_parse(query_wire, max_size)
            if quick is None:
                return self._answer_slow(query_wire, max_size)
            key, name_end, labels, rd, cd, qtype, qclass, edns, limit = quick
            hit = self._cache.get(key)
            if hit is not None:
                self.cache_hits += 1
                return query_wire[:2] + hit[2:12] + query_wire[12:name_end] + hit[name_end:]
            wire = self._respond(
                int.from_bytes(query_wire[:2], "big"), 0, rd, cd, labels, qtype, qclass, edns, limit
            )
            cache = self._cache
            if self.cache_size > 0:
                if len(cache) >= self.cache_size:
                    del cache[next(iter(cache))]  # oldest first: random names cannot grow it unbounded
                cache[key] = wire
            return wire
        except Exception:  # pragma: no cover - defensive; the hostile-input test hunts for these
            log.exception("zone %s: failed to answer a %d-byte query", self.domain, len(query_wire))
            self.dropped += 1
            return None

    def _quick_parse(self, wire: bytes, max_size: int) -> tuple[Any, ...] | None:
        """Header, one uncompressed question and an optional OPT, or None for the slow path."""
        n = len(wire)
        if wire[2] & 0x78 or wire[4:10] != b"\x00\x01\x00\x00\x00\x00":  # opcode QUERY; QD=1, AN=NS=0
            return None
        i = 12
        labels: list[bytes] = []
        while True:
            if i >= n:
                return None
            length = wire[i]
            if length == 0:
                break
            if length > 63:  # compression pointer or extended label type
                return None
            labels.append(wire[i + 1 : i + 1 + length])
            i += length + 1
        name_end = i + 1
        if name_end - 12 > 255 or name_end + 4 > n:
            return None
        qtype = (wire[name_end] << 8) | wire[name_end + 1]
        qclass = (wire[name_end + 2] << 8) | wire[name_end + 3]
        i = name_end + 4
        arcount = (wire[10] << 8) | wire[11]
        edns: tuple[int, int] | None = None
        limit = max_size
        if arcount == 0:
            if i != n:
                return None
        elif arcount == 1:
            # OPT: root name, TYPE 41, CLASS = payload size, TTL = ext-rcode/version/flags, RDLEN, options
            if n < i + 11 or wire[i] != 0 or wire[i + 1] != 0 or wire[i + 2] != T_OPT:
                return None
            if i + 11 + ((wire[i + 9] << 8) | wire[i + 10]) != n:
                return None
            payload = (wire[i + 3] << 8) | wire[i + 4]
            edns = (wire[i + 6], wire[i + 7] & 0x80)  # version, DO bit
            limit = max(max_size, min(max(payload, UDP_MAX), self.max_udp_payload))
        else:
            return None
        rd, cd = wire[2] & 0x01, wire[3] & 0x10
        key = (wire[12:name_end].lower(), qtype, qclass, rd, cd, edns, limit)
        return key, name_end, labels, rd, cd, qtype, qclass, edns, limit

    def _answer_slow(self, wire: bytes, max_size: int) -> bytes | None:
        """Anything the fast path declined: odd opcodes, counts, compression; never cached."""
        try:
            msg = DNSRecord.parse(wire)
        except Exception:  # dnslib raises DNSError, BufferError, RecursionError… on garbage
            self.dropped += 1
            return None
        h = msg.header
        opts = [rr for rr in msg.ar if rr.rtype == T_OPT]
        edns: tuple[int, int] | None = None
        limit = max_size
        bad_opt = (
            len(opts) > 1
            or any(rr.rtype == T_OPT for rr in (*msg.rr, *msg.auth))
            or (opts and opts[0].rname.label != ())
        )
        if opts and not bad_opt:
            opt = opts[0]
            edns = ((opt.ttl >> 16) & 0xFF, 0x80 if opt.ttl & 0x8000 else 0)
            limit = max(max_size, min(max(opt.rclass, UDP_MAX), self.max_udp_payload))
        qid, rd, cd = h.id, h.rd, 0x10 if h.cd else 0
        question = msg.questions[0] if len(msg.questions) == 1 else None
        if question is not None:  # dnslib reads label types 0x40-0xbf as lengths: refuse those too
            qlabels = question.qname.label
            if sum(len(lbl) + 1 for lbl in qlabels) + 1 > 255 or any(len(lbl) > 63 for lbl in qlabels):
                question = None
        if h.opcode != 0:
            return self._encode(qid, h.opcode, rd, cd, NOTIMP, 0, question, [], [], [], edns)
        if bad_opt or question is None:
            return self._encode(
                qid, 0, rd, cd, FORMERR, 0, question, [], [], [], edns if not bad_opt else None
            )
        return self._respond(
            qid, 0, rd, cd, list(question.qname.label), question.qtype, question.qclass, edns, limit
        )

    def _respond(
        self,
        qid: int,
        opcode: int,
        rd: int,
        cd: int,
        labels: Sequence[bytes],
        qtype: int,
        qclass: int,
        edns: tuple[int, int] | None,
        limit: int,
    ) -> bytes:
        """Encode the answer to one question, truncated to `limit` bytes."""
        question = DNSQuestion(DNSLabel(list(labels)), qtype, qclass)
        if edns is not None and edns[0] > 0:
            return self._encode(qid, opcode, rd, cd, BADVERS, 0, question, [], [], [], edns)
        if qtype in (T_OPT, T_TKEY, T_TSIG):
            return self._encode(qid, opcode, rd, cd, FORMERR, 0, question, [], [], [], edns)
        if qtype in (T_MAILA, T_MAILB):
            return self._encode(qid, opcode, rd, cd, NOTIMP, 0, question, [], [], [], edns)
        name = _lower(labels)
        zone_apex = self._zone_of(name)
        if qtype in (T_AXFR, T_IXFR) or qclass not in (C_IN, C_ANY) or zone_apex is None:
            return self._encode(qid, opcode, rd, cd, REFUSED, 0, question, [], [], [], edns)
        node = self._rrsets.get(name)
        answers: list[RR] = []
        if node is not None:
            if qtype == T_ANY:
                answers = [rr for t in sorted(node) for rr in node[t]]
            else:
                answers = list(node.get(qtype, ()))
        if not answers:
            rcode = NOERROR if name in self._names else NXDOMAIN
            soa = self._soas.get(zone_apex)
            auth = [soa] if soa is not None else []
            return self._encode(qid, opcode, rd, cd, rcode, 1, question, [], auth, [], edns, limit)
        additional = self._additional(answers)
        return self._encode(qid, opcode, rd, cd, NOERROR, 1, question, answers, [], additional, edns, limit)

    def _additional(self, answers: list[RR]) -> list[list[RR]]:
        """RRsets that save the client a round trip (RFC 6763 §12), most useful first."""
        rrsets = self._rrsets
        done = {(_lower(rr.rname.label), rr.rtype) for rr in answers}
        out: list[list[RR]] = []

        def push(owner: Name, rtype: int) -> None:
            rrset = rrsets.get(owner, {}).get(rtype)
            if rrset and (owner, rtype) not in done:
                done.add((owner, rtype))
                out.append(rrset)

        def addresses(target: DNSLabel) -> None:
            owner = _lower(target.label)
            push(owner, T_A)
            push(owner, T_AAAA)

        for rr in answers:
            if rr.rtype == T_PTR:  # §12.1: SRV, TXT and the addresses of each instance
                inst = _lower(rr.rdata.label.label)
                push(inst, T_SRV)
                push(inst, T_TXT)
                for srv in rrsets.get(inst, {}).get(T_SRV, ()):
                    addresses(srv.rdata.target)
            elif rr.rtype == T_SRV:  # §12.2
                addresses(rr.rdata.target)
            elif rr.rtype == T_NS:
                addresses(rr.rdata.label)
        return out

    def _encode(
        self,
        qid: int,
        opcode: int,
        rd: int,
        cd: int,
        rcode: int,
        aa: int,
        question: DNSQuestion | None,
        answers: Sequence[RR],
        auth: Sequence[RR],
        additional: Sequence[Sequence[RR]],
        edns: tuple[int, int] | None,
        limit: int = TCP_MAX,
    ) -> bytes:
        """One response of at most `limit` bytes, encoded in a single pass.

        Name compression only points backwards, so encoding a prefix of the records
        yields a prefix of the full encoding: note where each record ends, then cut.
        Whole additional RRsets are dropped first (RFC 6763 §12 "as space allows");
        if the answers alone do not fit, TC is set and the answers that fit are kept.
        The OPT record is echoed whenever the query had one, truncated or not (RFC 6891).
        """
        buf = DNSBuffer()
        buf.append(bytes(12))  # the header is written last, once the counts are known
        if question is not None:
            question.pack(buf)
        tail = b""
        if edns is not None:  # OPT: root, TYPE, CLASS = our payload, ext-rcode, version 0, DO, RDLEN 0
            tail = b"\x00" + struct.pack(
                "!HHBBHH", T_OPT, self.max_udp_payload, rcode >> 4, 0, 0x8000 if edns[1] else 0, 0
            )
        room = limit - len(tail)
        cut = buf.offset
        an = ns = ar = tc = 0
        for rr in answers:
            rr.pack(buf)
            if buf.offset > room:
                tc = 1
                break
            an += 1
            cut = buf.offset
        if not tc:
            for rr in auth:
                rr.pack(buf)
                if buf.offset > room:
                    break
                ns += 1
                cut = buf.offset
            for rrset in additional:
                for rr in rrset:
                    rr.pack(buf)
                if buf.offset > room:
                    break
                ar += len(rrset)
                cut = buf.offset
        flags = 0x8000 | (opcode & 0xF) << 11 | aa << 10 | tc << 9 | (rd & 1) << 8 | (0x10 if cd else 0)
        flags |= rcode & 0xF
        header = struct.pack(
            "!6H", qid, flags, 0 if question is None else 1, an, ns, ar + (0 if edns is None else 1)
        )
        return header + bytes(buf.data[12:cut]) + tail
