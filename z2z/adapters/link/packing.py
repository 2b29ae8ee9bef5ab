"""Answers packed so that each packet is self-contained: an instance's PTR with its SRV, TXT
and addresses.

RFC 6763 §12 asks a responder to add an instance's SRV, TXT and address records
to a PTR answer, and a client to query for what is missing.  Some clients never
ask: bonjour-service's Browser (Node; 1.4.4) builds an instance from the one
packet that brings its PTR, and an instance whose SRV, TXT or addresses landed
in another packet stays incomplete for good.  One device answering for itself
never spills over, but a gateway answers for a whole campus: a PTR question for
a type with many instances gets an answer of several packets, and
python-zeroconf fills them section by section (every PTR first, then the
additional records in what room is left), so most instances are split from
their records.

`InstancePacker` packs such an answer again, with python-zeroconf's own
`DNSOutgoing` (no wire format is written here): the records are grouped by the
instance (or host) each answer is about, each group with every record that
describes it, and whole groups are filled into packets of python-zeroconf's
typical size.  A record two groups need (a host's addresses) goes into each
packet that needs it.  Answers that fit one packet, queries and anything with
questions or authorities are left as they are.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable

from zeroconf import DNSOutgoing, DNSPointer, DNSRecord, DNSService
from zeroconf.const import _MAX_MSG_TYPICAL

__all__ = ["InstancePacker"]

_HEADER = 12  # a DNS header: what each packet of a group costs once
# Sizes of groups packed alone, remembered: a gateway answers for the same proxies again
# and again (python-zeroconf keeps one record object per published record), so most
# answers are packed once, as the final packets.
COSTS_KEPT = 20_000


class InstancePacker:
    """Packs multi-packet answers by instance; remembers what each instance's records cost."""

    def __init__(self, kept: int = COSTS_KEPT) -> None:
        self._costs: OrderedDict[tuple[DNSRecord, ...], int] = OrderedDict()
        self._kept = kept

    def pack(self, out: DNSOutgoing) -> list[DNSOutgoing] | None:
        """`out` as packets that each hold whole instances; None when it is fine as it is
        (one packet, a query, anything with questions or authorities)."""
        if out.questions or out.authorities or not out.is_response() or len(out.answers) < 2:
            return None
        answered: dict[DNSRecord, float] = dict(out.answers)
        groups = _groups(answered, out.additionals)
        if len(groups) < 2:
            return None

        def build(records: Iterable[DNSRecord]) -> DNSOutgoing:
            part = DNSOutgoing(out.flags, out.multicast, out.id)
            extra = []
            for record in records:
                if record in answered:
                    part.add_answer_at_time(record, answered[record])
                else:
                    extra.append(record)
            for record in extra:
                part.add_additional_answer(record)
            return part

        costs = [self._cost(group, build) for group in groups]
        if sum(costs) <= _MAX_MSG_TYPICAL - _HEADER:
            return None  # fits one packet even without the names the groups share
        packed: list[dict[DNSRecord, None]] = []
        room = 0
        for group, cost in zip(groups, costs, strict=True):
            if packed and cost <= room:
                packed[-1].update(group)
                room -= cost
            else:
                packed.append(dict(group))
                room = _MAX_MSG_TYPICAL - _HEADER - cost
        return [build(records) for records in packed]

    def _cost(self, group: dict[DNSRecord, None], build: Callable[[Iterable[DNSRecord]], DNSOutgoing]) -> int:
        """What `group` adds to a packet, at most: its size packed alone (names shared with
        the packet's other groups are compressed, so it only gets smaller)."""
        key = tuple(group)
        cost = self._costs.get(key)
        if cost is None:
            cost = sum(len(packet) - _HEADER for packet in build(key).packets())
            self._costs[key] = cost
            if len(self._costs) > self._kept:
                self._costs.popitem(last=False)
        else:
            self._costs.move_to_end(key)
        return cost


def _groups(
    answered: dict[DNSRecord, float], additionals: Iterable[DNSRecord]
) -> list[dict[DNSRecord, None]]:
    """The records of one answer, grouped by what each answer is about (order kept).

    A PTR answer is about the instance it points to: the group holds every
    record named like the instance (SRV, TXT, NSEC) and every record named like
    an SRV's target (A, AAAA, NSEC).  Other answers are about their own name.
    Additionals that no group claims form a group of their own: nothing is lost.
    """
    named: defaultdict[str, list[DNSRecord]] = defaultdict(list)
    for record in (*answered, *additionals):
        if not isinstance(record, DNSPointer):  # a type's PTRs are answers, never an instance's data
            named[record.key].append(record)
    by_subject: dict[str, dict[DNSRecord, None]] = {}
    for record in answered:
        subject = record.alias_key if isinstance(record, DNSPointer) else record.key
        by_subject.setdefault(subject, {})[record] = None
    claimed: set[DNSRecord] = set()
    for subject, group in by_subject.items():
        for record in named.get(subject, ()):
            group.setdefault(record, None)
        for record in list(group):
            if isinstance(record, DNSService):
                for address in named.get(record.server_key, ()):
                    group.setdefault(address, None)
        claimed.update(group)
    groups = list(by_subject.values())
    rest = {record: None for record in additionals if record not in claimed}
    if rest:
        groups.append(rest)
    return groups
