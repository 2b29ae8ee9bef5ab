"""`z2z browse` and `z2z resolve`: read a type's services straight from the DHTs.

Like `dns-sd -B` / `dns-sd -L`, but across every site of a z2z network, in every
stage: it gets the type's key and the leaders registry from the rendezvous, and
when the registry names a leaders' DHT (stage 3: services that appear from then
on are put only there) it joins that DHT as a short-lived read-only OpenDHT node
(bootstrap to the leaders' contacts, one get, leave), then keeps, per (site,
instance), the newest version that is neither a tombstone nor expired.

Everything runs within one time budget: a rendezvous that does not answer ends
the query (nothing is reachable); a leaders' DHT that does not answer (or lies)
costs only its share of the budget and a warning, and the rendezvous's answer is
shown.  A private network's values and leader records are found and read only
with its secret; signatures are checked (trust in site keys is a gateway's
business, not this).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from z2z.adapters.rendezvous import EmbeddedRendezvous, RendezvousError, open_rendezvous, parse_bootstrap
from z2z.adapters.rendezvous.base import AnswerTooBig
from z2z.core.security import Codec, SecurityError
from z2z.core.stages.registry import Registry
from z2z.core.wire import envelope as protocol
from z2z.core.wire.envelope import Envelope, ProtocolError
from z2z.core.wire.gateways import WireError, network_id, open_record

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 20.0  # seconds for the whole query, node shutdown included
CLOSE_RESERVE = 3.0  # of the budget, kept for leaving the leaders' DHT cleanly
MAX_CONTACTS = 3  # leaders' DHT contacts to bootstrap to


@dataclass(frozen=True, slots=True)
class Found:
    envelopes: list[Envelope]  # live services, sorted by (instance, site)
    rejected: int  # values that were not valid z2z envelopes of this network
    sources: tuple[str, ...] = ()  # where values were read: "rendezvous", "leaders' DHT"
    warnings: tuple[str, ...] = field(default=())  # one line each, for stderr
    # why values were refused: reason (``not-sealed``, ``bad-signature``...) → count; registry
    # values that were not leader records of this network are counted as ``leader-record/<reason>``
    reasons: tuple[tuple[str, int], ...] = ()


def rejected_line(found: Found, network: str) -> str | None:
    """One stderr line saying how many values were refused and why (None if none were)."""
    if not found.reasons:
        return None
    total = sum(n for _, n in found.reasons)
    why = ", ".join(f"{reason} {n}" for reason, n in found.reasons)
    return f"z2z: ignored {total} value(s) that are not valid z2z records of network {network} ({why})"


def _sorted_reasons(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items()))


def live_services(
    values: list[bytes],
    network: str,
    service_type: str,
    now: float,
    max_skew: float = 30.0,
    codec: Codec | None = None,
) -> Found:
    """The newest live version per (site, instance) among raw DHT values (pure)."""
    codec = codec or Codec(network)
    dht_key = codec.type_key(service_type)
    newest: dict[tuple[str, str], Envelope] = {}
    reasons: Counter[str] = Counter()
    for data in values:
        try:
            opened = codec.open(data, dht_key)
            env = protocol.decode(opened.body)
            if not codec.verify(opened):
                raise SecurityError("bad-signature")
        except (ProtocolError, SecurityError) as exc:
            reasons[exc.reason] += 1
            continue
        if env.network != network or env.service.type != service_type:
            reasons["other-network" if env.network != network else "other-type"] += 1
            continue
        key = (env.site, env.service.instance)
        if key not in newest or env.seq > newest[key].seq:
            newest[key] = env
    live = [e for e in newest.values() if not e.gone and e.expires() + max_skew >= now]
    return Found(
        sorted(live, key=lambda e: (e.service.instance.casefold(), e.site)),
        sum(reasons.values()),
        reasons=_sorted_reasons(reasons),
    )


class Progress:
    """Says what the query is doing, but only once it has taken longer than `after` seconds."""

    def __init__(self, say: Callable[[str], None], after: float = 1.0) -> None:
        self._say = say
        self._after = after
        self._step = ""
        self._loud = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._after, self._wake)

    def _wake(self) -> None:
        self._loud = True
        if self._step:
            self._say(self._step)

    def step(self, text: str) -> None:
        self._step = text
        if self._loud:
            self._say(text)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def leaders_dht_contacts(
    values: Iterable[bytes],
    codec: Codec,
    now: float,
    max_skew: float = 30.0,
    reasons: Counter[str] | None = None,
) -> tuple[str, tuple[str, ...], int]:
    """(structure, contacts, bad records) of the leaders' DHT to read, from raw registry values (pure).

    The structure is the one every leader ends up in (most members, ties by id),
    as the leaders themselves choose it; only that one is joined, so the reader
    never bridges two structures a partition left apart.  Bad records are
    counted in `reasons` (by `WireError.reason`) when it is given.
    """
    registry = Registry("", codec.network, max_skew)
    bad = 0
    for data in values:
        try:
            record, _signer = open_record(data, codec)
        except WireError as exc:
            bad += 1
            if reasons is not None:
                reasons[exc.reason] += 1
            continue
        registry.add(record, now)
    structure = registry.best()
    if not structure:
        return "", (), bad
    return structure, registry.contacts(structure, MAX_CONTACTS), bad


async def _read_leaders_dht(
    contacts: tuple[str, ...], network: str, key: bytes, budget: float, warnings: list[str]
) -> list[bytes]:
    """Join the leaders' DHT via `contacts`, get `key` once, leave; RendezvousError on failure.

    An answer over the cap (a node flooding the key) keeps what was read before
    it, with a line in `warnings`.
    """
    try:
        bootstrap = parse_bootstrap(",".join(contacts))
    except ValueError as exc:
        raise RendezvousError(f"bad leader contact: {exc}") from None
    node = EmbeddedRendezvous(
        bootstrap,
        network_id=network_id(network),
        timeout=max(1.0, budget),
        bootstrap_timeout=max(0.5, min(3.0, budget / 2)),
    )
    try:
        async with asyncio.timeout(budget):
            await node.start()
            try:
                values = await node.get(key)
            except AnswerTooBig as exc:
                warnings.append(f"z2z: the leaders' DHT answered too much ({exc}); showing what was read")
                values = exc.values
    except TimeoutError:
        raise RendezvousError(f"no answer within {budget:.1f} s") from None
    finally:
        await node.close()
    return [v.data for v in values]


async def fetch(
    url: str | None,
    network: str,
    service_type: str,
    secret: bytes | None = None,
    *,
    budget: float = DEFAULT_BUDGET,
    follow_leaders: bool = True,
    progress: Progress | None = None,
) -> Found:
    """The live services of `service_type`, from the rendezvous at `url` and the leaders' DHT.

    RendezvousError when the rendezvous does not answer within the budget
    (nothing is reachable then: the leaders' DHT is found through it).
    """
    codec = Codec(network, secret)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    step = progress.step if progress is not None else (lambda text: None)
    type_key = codec.type_key(service_type)
    step(f"z2z: asking the rendezvous {url or 'public OpenDHT'}...")
    rendezvous = open_rendezvous(url)
    warnings: list[str] = []
    try:
        async with asyncio.timeout(max(0.1, deadline - loop.time() - CLOSE_RESERVE)):
            await rendezvous.start()
            values = [v.data for v in await rendezvous.get(type_key)]
            registry: list[bytes] = []
            if follow_leaders:
                try:
                    registry = [v.data for v in await rendezvous.get(codec.leaders_key())]
                except RendezvousError as exc:  # the services answered: show them, say what is missing
                    warnings.append(f"z2z: cannot read the leaders registry ({exc}); leaders' DHT skipped")
    except TimeoutError:
        raise RendezvousError(f"no answer within {budget:g} s") from None
    finally:
        await rendezvous.close()
    sources = ["rendezvous"]
    registry_reasons: Counter[str] = Counter()
    structure, contacts, bad = leaders_dht_contacts(
        set(registry), codec, time.time(), reasons=registry_reasons
    )
    if bad:
        log.info("leaders registry: %d value(s) that are not leader records of this network", bad)
    if contacts:
        left = deadline - loop.time() - CLOSE_RESERVE
        step(f"z2z: reading the leaders' DHT (structure {structure}) via {', '.join(contacts)}...")
        try:
            if left <= 0:
                raise RendezvousError("no time left in the budget")
            values += await _read_leaders_dht(contacts, network, type_key, left, warnings)
            sources.append("leaders' DHT")
        except RendezvousError as exc:
            log.debug("leaders' DHT via %s: %s", contacts, exc)
            warnings.append(
                f"z2z: the leaders' DHT did not answer via {', '.join(contacts)} ({exc}); "
                "services that appeared after the leaders formed it may be missing"
            )
    # The same value may come from both sources: judge (and count) each once.
    found = live_services(list(dict.fromkeys(values)), network, service_type, time.time(), codec=codec)
    reasons = Counter(dict(found.reasons))
    reasons.update({f"leader-record/{r}": n for r, n in registry_reasons.items()})
    return Found(found.envelopes, found.rejected, tuple(sources), tuple(warnings), _sorted_reasons(reasons))


def as_json(env: Envelope) -> dict[str, object]:
    s = env.service
    return {
        "site": env.site,
        "instance": s.instance,
        "type": s.type,
        "host": s.host,
        "port": s.port,
        "addresses": list(s.addresses),
        "txt": [t.decode("utf-8", errors="backslashreplace") for t in s.txt],
        "subtypes": list(s.subtypes),
        "seq": env.seq,
        "expires": env.expires(),
    }
