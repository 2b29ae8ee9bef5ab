"""`z2z browse` and `z2z resolve`: read a type's services straight from a DHT.

Like `dns-sd -B` / `dns-sd -L`, but across every site of a z2z network: it opens
the rendezvous (or a leaders' DHT node), gets the type's key once and keeps, per
(site, instance), the newest version that is neither a tombstone nor expired.
A private network's values are found and read only with its secret; their
signatures are checked (trust in site keys is a gateway's business, not this).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from z2z.adapters.rendezvous import open_rendezvous
from z2z.core.security import Codec, SecurityError
from z2z.core.wire import envelope as protocol
from z2z.core.wire.envelope import Envelope, ProtocolError


@dataclass(frozen=True, slots=True)
class Found:
    envelopes: list[Envelope]  # live services, sorted by (instance, site)
    rejected: int  # values that were not valid z2z envelopes of this network


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
    rejected = 0
    for data in values:
        try:
            opened = codec.open(data, dht_key)
            env = protocol.decode(opened.body)
            if not codec.verify(opened):
                raise SecurityError("bad-signature")
        except (ProtocolError, SecurityError):
            rejected += 1
            continue
        if env.network != network or env.service.type != service_type:
            rejected += 1
            continue
        key = (env.site, env.service.instance)
        if key not in newest or env.seq > newest[key].seq:
            newest[key] = env
    live = [e for e in newest.values() if not e.gone and e.expires() + max_skew >= now]
    return Found(sorted(live, key=lambda e: (e.service.instance.casefold(), e.site)), rejected)


async def fetch(url: str | None, network: str, service_type: str, secret: bytes | None = None) -> Found:
    """Get `service_type`'s values from the rendezvous at `url`; RendezvousError if unreachable."""
    codec = Codec(network, secret)
    rendezvous = open_rendezvous(url)
    await rendezvous.start()
    try:
        values = await rendezvous.get(codec.type_key(service_type))
    finally:
        await rendezvous.close()
    return live_services([v.data for v in values], network, service_type, time.time(), codec=codec)


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
