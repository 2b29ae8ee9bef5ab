"""A tiny HTTP service: GET returns a marker, POST returns the SHA-256 of the body it received.

Stands in for a printer's web or IPP port in the relay tests: the client on the
other campus fetches the marker and uploads a few MB through the relay, and
the checksum proves every byte arrived.  Prints one JSON line when listening.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--address", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--marker", required=True)
    args = p.parse_args()
    marker = args.marker.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._reply(marker)

        def do_POST(self) -> None:
            left = int(self.headers.get("Content-Length", "0"))
            digest = hashlib.sha256()
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
            self._reply(digest.hexdigest().encode())

        def log_message(self, fmt: str, *a: object) -> None:
            print(
                json.dumps({"event": "request", "client": self.client_address[0], "line": fmt % a}),
                flush=True,
            )

    server = ThreadingHTTPServer((args.address, args.port), Handler)
    print(json.dumps({"event": "listening", "port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
