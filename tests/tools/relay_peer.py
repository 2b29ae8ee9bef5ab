"""Speak the relay protocol to an endpoint as a given member (or a stranger) and print what happened.

Used to show that an exporting gateway refuses streams to what it does not
export, and that a gateway of another network cannot connect at all.  Builds
its certificate as a gateway does (z2z.app.relay): network CA from the secret
file, site certificate for the site key file.  Prints one JSON line:
``{"event": "result", "ok": ..., "error": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from z2z.adapters.relay import RelayConnector, StreamLimits, tls_contexts
from z2z.adapters.relay.pki import network_ca, site_certificate
from z2z.app import keys
from z2z.core.relay import RelayError, StreamRequest
from z2z.core.security import Codec


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--secret", required=True)
    p.add_argument("--site-key", required=True)
    p.add_argument("--site", required=True, help="the site this peer claims to be")
    p.add_argument("--network", default="z2z")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--to", required=True, help="the exporting site")
    p.add_argument("--type", default="_http._tcp")
    p.add_argument("--instance", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--send", default="GET / HTTP/1.0\r\n\r\n")
    args = p.parse_args()
    secret = keys.read_secret(args.secret)
    key = keys.load_signing_key(args.site_key)
    seed = Codec(args.network, secret, key).relay_ca_seed()
    assert seed is not None
    ca_key, ca_cert = network_ca(seed, args.network)
    cert = site_certificate(ca_key, ca_cert, args.site, key, time.time())
    with tempfile.TemporaryDirectory() as tmp:
        cert_file = Path(tmp) / "cert.pem"
        cert_file.write_bytes(cert.public_bytes(Encoding.PEM) + ca_cert.public_bytes(Encoding.PEM))
        _, client = tls_contexts(ca_cert.public_bytes(Encoding.PEM).decode(), str(cert_file), args.site_key)
    connector = RelayConnector(client, authorize=lambda site, k: None, limits=StreamLimits(setup=5))
    req = StreamRequest("connect", args.to, args.type, args.instance, args.port)
    try:
        reader, writer = await connector.open(args.endpoint, req)
    except RelayError as exc:
        print(
            json.dumps({"event": "result", "ok": False, "reason": exc.reason, "error": str(exc)}), flush=True
        )
        return
    writer.write(args.send.encode())
    # Until the service closes (it answers HTTP/1.0 and closes): one read()
    # may return only the headers, which the service writes separately.
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    print(json.dumps({"event": "result", "ok": True, "data": data.decode(errors="replace")}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
