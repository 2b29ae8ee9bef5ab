#!/usr/bin/env python3
"""A lying member of a private network's leaders' DHT, for `z2z browse` / `z2z resolve` tests.

It holds the network secret (an insider: the worst case), reads the leaders
registry from the rendezvous as a reader would, joins the leaders' DHT those
records point at as a real OpenDHT node, and there puts under a service type's
key every kind of bad value a reader must refuse:

    garbage        random bytes                          → not-sealed
    unsealed       a well-formed public-format envelope  → not-sealed
    other-secret   sealed with another network secret     → bad-seal
    bad-signature  sealed right, signer swapped           → bad-signature
    malformed      sealed and signed, body not JSON       → not-json
    oversized      20 kB starting like a sealed value     → too-large
    other-network  sealed and signed, envelope of network "other" → other-network

Then it registers itself as a leader of that structure (a sealed, signed leader
record in the rendezvous), so a reader bootstraps to it too, and stays up until
stdin closes:

    python tests/tools/leaders_dht_liar.py --rendezvous http://10.77.0.1:8081 \
        --secret net.secret --type _ipp._tcp --address 10.77.0.1

One JSON line per event on stdout: ``ready`` (with ``contact``, ``structure``,
``puts``: kind → confirmed), or ``error``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from z2z.adapters.rendezvous import EmbeddedRendezvous, ProxyRendezvous, parse_bootstrap
from z2z.adapters.rendezvous.base import RendezvousError
from z2z.app import keys
from z2z.app.query import leaders_dht_contacts
from z2z.core.records import Service
from z2z.core.security import MAGIC, NONCE_BYTES, Codec, public_key_bytes
from z2z.core.wire import envelope as protocol
from z2z.core.wire.gateways import LeaderRecord, network_id, seal_record

KINDS = ("garbage", "unsealed", "other-secret", "bad-signature", "malformed", "oversized", "other-network")


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def envelope(network: str, site: str, instance: str, service_type: str) -> bytes:
    svc = Service(service_type, instance, "evil", 631, (b"rp=ipp/print",), ("10.77.3.66",))
    env = protocol.Envelope(
        network, site, "0123456789abcdef", int(time.time() * 1000), time.time(), 600, False, svc
    )
    return protocol.encode(env)


def bad_values(network: str, secret: bytes, service_type: str) -> dict[str, bytes]:
    """Each kind of bad value, made for the type key of `service_type`."""
    signer = Ed25519PrivateKey.generate()
    ours = Codec(network, secret, signer)
    theirs = Codec(network, os.urandom(len(secret)), signer)
    key = ours.type_key(service_type)
    forged = envelope(network, "campus-a", "Forged Printer", service_type)
    sealed = ours.seal(forged, key)
    # Swap the signer inside the seal: the AEAD still opens (insider), the signature is not the signer's.
    aead = ours._aead
    assert aead is not None
    head = len(MAGIC) + NONCE_BYTES
    plain = aead.decrypt(sealed[len(MAGIC) : head], sealed[head:], MAGIC + key)
    other_key = public_key_bytes(Ed25519PrivateKey.generate())
    nonce = os.urandom(NONCE_BYTES)
    swapped = MAGIC + nonce + aead.encrypt(nonce, other_key + plain[len(other_key) :], MAGIC + key)
    return {
        "garbage": os.urandom(300),
        "unsealed": envelope(network, "campus-a", "Unsealed Printer", service_type),
        "other-secret": theirs.seal(envelope(network, "campus-a", "Other Secret Printer", service_type), key),
        "bad-signature": swapped,
        "malformed": ours.seal(b"{not json at all", key),
        "oversized": MAGIC + os.urandom(20_000),
        "other-network": ours.seal(envelope("other", "campus-a", "Other Network Printer", service_type), key),
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rendezvous", required=True)
    ap.add_argument("--secret", required=True, type=Path)
    ap.add_argument("--network", default="z2z")
    ap.add_argument("--type", default="_ipp._tcp")
    ap.add_argument("--address", required=True, help="this host's address, for the liar's leader record")
    ap.add_argument("--site", default="liar")
    a = ap.parse_args()
    secret = keys.read_secret(a.secret)
    signer = Ed25519PrivateKey.generate()
    codec = Codec(a.network, secret, signer)
    rv = ProxyRendezvous(a.rendezvous)
    await rv.start()
    try:
        registry = [v.data for v in await rv.get(codec.leaders_key())]
        structure, contacts, _bad = leaders_dht_contacts(registry, codec, time.time())
        if not contacts:
            emit("error", error="no leaders' DHT in the registry")
            return 1
        node = EmbeddedRendezvous(
            parse_bootstrap(",".join(contacts)), network_id=network_id(a.network), permanent=True
        )
        await node.start()
        puts: dict[str, bool] = {}
        for i, (kind, data) in enumerate(bad_values(a.network, secret, a.type).items()):
            try:
                await node.put(codec.type_key(a.type), 0x5EED0000 + i, data)
                puts[kind] = True
            except RendezvousError as exc:
                puts[kind] = False
                emit("put-failed", kind=kind, error=str(exc))
        contact = f"{a.address}:{node.bound_port}"
        record = LeaderRecord(a.network, a.site, os.urandom(8).hex(), contact, structure, 3, time.time(), 600)
        await rv.put(
            codec.leaders_key(), int.from_bytes(os.urandom(8), "big") or 1, seal_record(record, codec)
        )
        emit("ready", contact=contact, structure=structure, contacts=list(contacts), puts=puts)
        await asyncio.to_thread(sys.stdin.read)  # until stdin closes
        await node.close()
    finally:
        await rv.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
