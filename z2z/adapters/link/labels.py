"""Instance names in one DNS label on the wire, whatever python-zeroconf does with them.

RFC 6763 §4.1.1 lets an instance name hold any UTF-8 text, dots included ("Room
2.14 Printer"); on the wire it is one label.  python-zeroconf (0.154, its issue
#146) keeps names as dotted strings and writes them by splitting at every dot,
so that name leaves as the labels ``Room 2`` and ``14 Printer``: avahi-browse
drops it, other stacks show a malformed PTR.  Its writer is compiled (Cython),
so it cannot be patched; reading is fine (it joins labels with dots, and looks
names up in that form, so a one-label query finds the dotted registration).

So the outgoing packets are mended after python-zeroconf packed them: a name
that ends in a DNS-SD service type under ``local`` (``_x._tcp.local``) and has
more than one label before the type is an instance split at its dots, since
DNS-SD has exactly one label there (`_sub` subtype names, ``<sub>._sub.<type>``,
are the one two-label form and are left alone).  Its leading labels are joined
back into one.  The packet is parsed and packed again with dnslib; packets
without such a name (nearly all) are sent as they are, byte for byte.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from dnslib import NSEC, PTR, SRV, DNSError, DNSLabel, DNSRecord

__all__ = ["MAX_PACKET", "has_split_name", "join_split_names", "joined_labels"]

log = logging.getLogger(__name__)

# RFC 6762 §17: an mDNS packet may be up to 9000 bytes (python-zeroconf's _MAX_MSG_ABSOLUTE).
MAX_PACKET = 8966
_PROTOCOLS = (b"_tcp", b"_udp")


def joined_labels(labels: Sequence[bytes]) -> tuple[bytes, ...] | None:
    """`labels` with a split instance name joined back into one label; None if whole already."""
    if len(labels) < 5 or labels[-1].lower() != b"local" or labels[-2].lower() not in _PROTOCOLS:
        return None
    if not labels[-3].startswith(b"_"):
        return None
    instance = labels[:-3]
    if len(instance) == 2 and instance[1].lower() == b"_sub":
        return None  # <subtype>._sub.<type>.local: the one legitimate deeper name
    return (b".".join(instance), *labels[-3:])


def has_split_name(names: Iterable[str]) -> bool:
    """Whether any dotted name (python-zeroconf's form) would be written split."""
    for name in names:
        if name.count(".") >= 4 and joined_labels(name.rstrip(".").encode("utf-8").split(b".")) is not None:
            return True
    return False


_warned: set[str] = set()


def join_split_names(packet: bytes) -> bytes:
    """`packet` with every split instance name joined; the packet itself when none is, or on error.

    Owner names, questions and the names inside PTR, SRV and NSEC rdata are
    mended.  A packet dnslib cannot read, or one that would grow past
    `MAX_PACKET`, is returned unchanged (and logged once).
    """
    try:
        msg = DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError) as exc:
        _warn_once("unreadable", "cannot mend instance names in an outgoing mDNS packet: %s", exc)
        return packet
    changed = False

    def mend(label: DNSLabel) -> DNSLabel:
        nonlocal changed
        fixed = joined_labels([bytes(lbl) for lbl in label.label])
        if fixed is None:
            return label
        changed = True
        return DNSLabel(list(fixed))

    for question in msg.questions:
        question.qname = mend(question.qname)
    for rr in (*msg.rr, *msg.auth, *msg.ar):
        rr.rname = mend(rr.rname)
        rdata = rr.rdata
        if isinstance(rdata, PTR | NSEC):  # PTR covers CNAME and NS too
            rdata.label = mend(rdata.label)
        elif isinstance(rdata, SRV):
            rdata.target = mend(rdata.target)
    if not changed:
        return packet
    try:
        mended = bytes(msg.pack())
    except (DNSError, ValueError) as exc:
        _warn_once("unpackable", "cannot mend instance names in an outgoing mDNS packet: %s", exc)
        return packet
    if len(mended) > MAX_PACKET:
        _warn_once(
            "oversize", "mended mDNS packet would be %d bytes; sent as python-zeroconf wrote it", len(mended)
        )
        return packet
    return mended


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)
    else:
        log.debug(message, *args)
