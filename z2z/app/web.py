"""A tiny read-only HTTP server on the gateway's event loop: the status page,
``/status.json`` and Prometheus ``/metrics``.

No framework: a GET-only HTTP/1.0-style responder (one request per connection,
bounded request size and time) is all a status page needs, and running on the
loop means every page is a consistent snapshot of the gateway, never a race
with it.  The page refreshes itself (``<meta http-equiv="refresh">``), so it
works without JavaScript.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from z2z.adapters.dns import parse_listen
from z2z.adapters.link.base import LinkError

if TYPE_CHECKING:
    from z2z.app.metrics import Metrics
    from z2z.app.status import GatewayStatus

log = logging.getLogger(__name__)

MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0
REFRESH_S = 5

Handler = Callable[[], tuple[str, bytes]]  # -> (content type, body)


class HttpServer:
    """Serve `routes` (path -> handler) on ``ADDR:PORT``; everything is read-only."""

    def __init__(self, listen: str, routes: dict[str, Handler]) -> None:
        self.host, self.port = parse_listen(listen)
        self.routes = routes
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when 0 was asked for)."""
        assert self._server is not None
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            status, ctype, body, head_only = self._respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        reply = (
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + (b"" if head_only else body)
        with contextlib.suppress(ConnectionError):
            writer.write(reply)
            await writer.drain()
        writer.close()

    def _respond(self, head: bytes) -> tuple[str, str, bytes, bool]:
        text = "text/plain; charset=utf-8"
        if len(head) > MAX_REQUEST:
            return "431 Request Header Fields Too Large", text, b"request too large\n", False
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3:
            return "400 Bad Request", text, b"bad request\n", False
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", text, b"read-only: GET or HEAD\n", False
        handler = self.routes.get(target.split("?", 1)[0])
        if handler is None:
            return "404 Not Found", text, b"not found\n", method == "HEAD"
        try:
            ctype, body = handler()
        except Exception:
            log.exception("serving %s failed", target)
            return "500 Internal Server Error", text, b"internal error\n", method == "HEAD"
        return "200 OK", ctype, body, method == "HEAD"


# ---------------------------------------------------------------------------
# the status page


def json_body(doc: dict[str, Any]) -> tuple[str, bytes]:
    return "application/json", json.dumps(doc, indent=2, sort_keys=True).encode()


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: list[str], rows: list[list[object]], empty: str) -> str:
    if not rows:
        return f"<p class=none>{_e(empty)}</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:70em}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse}th,td{text-align:left;padding:.25em .8em .25em 0;
border-bottom:1px solid #ddd;vertical-align:top}th{color:#555;font-weight:600}
.ok{color:#176d2c}.bad{color:#b3261e}.none,.meta{color:#777}dl{display:grid;
grid-template-columns:max-content auto;gap:.2em 1em;margin:0}dt{color:#555}dd{margin:0}
"""


def render_status_html(doc: dict[str, Any], now: float | None = None) -> str:
    """The status page for a `Gateway.status()` document (pure, every value escaped)."""
    st = doc.get("stages") or {}
    leader = st.get("leader") or "-"
    if doc.get("bridging"):
        role = "bridging (leader of its island)" if st else "bridging"
    else:
        role = st.get("state", "not bridging")
    rv_ok = doc.get("rendezvous_ok")
    summary = [
        ("site", doc.get("site")),
        ("network", doc.get("network")),
        ("node", doc.get("node")),
        ("stage", f"{st.get('stage', '-')} ({st.get('state', 'no election')})" if st else "no election"),
        ("role", role),
        ("island leader", leader),
        ("bridging via", doc.get("bridging_via")),
        (
            "DHT",
            f"structure {st.get('structure') or '-'}, {st.get('structure_size', 0)} leaders, "
            f"{st.get('dht_peers', 0)} peers"
            if st
            else "-",
        ),
    ]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in summary)
    dl += (
        f"<dt>rendezvous</dt><dd class={'ok' if rv_ok else 'bad'}>{_e(doc.get('rendezvous') or 'public')}"
        f": {'reachable' if rv_ok else 'UNREACHABLE'}"
        + (f" ({_e(', '.join(doc['rendezvous_failing']))})" if doc.get("rendezvous_failing") else "")
        + "</dd>"
    )
    if doc.get("flapping"):
        dl += f"<dt>flapping (held)</dt><dd class=bad>{_e(', '.join(doc['flapping']))}</dd>"
    island = _table(
        ["node", "site", "rank", "state"],
        [[p.get("node"), p.get("site"), p.get("rank"), p.get("state")] for p in st.get("island", [])],
        "alone on this link",
    )
    leaders = _table(
        ["site", "node", "contact", "structure"],
        [
            [r.get("site"), r.get("node"), r.get("contact"), r.get("structure")]
            for r in doc.get("leaders") or []
        ],
        "no other leader known",
    )
    by_site: dict[str, list[dict[str, Any]]] = {}
    for s in doc.get("services", []):
        by_site.setdefault(s["site"], []).append(s)
    services = ""
    for site in sorted(by_site):
        rows = [
            [s["direction"], s["instance"], s["type"], f"{s['host']}:{s['port']}", " ".join(s["addresses"])]
            for s in sorted(by_site[site], key=lambda s: (s["type"], s["instance"]))
        ]
        services += f"<h3>{_e(site)}</h3>" + _table(["", "instance", "type", "host", "addresses"], rows, "")
    if not services:
        services = "<p class=none>nothing bridged yet</p>"
    relay = doc.get("relay")
    relayed = (
        _table(
            ["site", "instance", "type", "route", "why", "port here"],
            [
                [i["site"], i["instance"], i["type"], i["route"], i["reason"], i["port"] or ""]
                for i in relay.get("imports", [])
            ],
            "no import asked for yet",
        )
        if relay
        else "<p class=none>relay off (public network, or relay = never)</p>"
    )
    counts = _table(
        ["kind", "reason or rule", "records"],
        [["rejected", k, v] for k, v in sorted((doc.get("rejected") or {}).items())]
        + [["filtered", k, v] for k, v in sorted((doc.get("filtered") or {}).items())]
        + [["rendezvous failed", k, v] for k, v in sorted((doc.get("rendezvous_failures") or {}).items())]
        + [
            [f"OVER QUOTA: {site}", f"{e['setting']} ({e['held']}/{e['limit']})", e["refused"]]
            for site, e in sorted((doc.get("over_quota") or {}).items())
        ],
        "nothing rejected or filtered",
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now if now is not None else doc.get("time", 0)))
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta http-equiv=refresh content={REFRESH_S}>
<meta name=viewport content="width=device-width, initial-scale=1">
<title>z2z {_e(doc.get("site"))}</title><style>{_STYLE}</style></head>
<body>
<h1>z2z gateway <span id=site>{_e(doc.get("site"))}</span></h1>
<p class=meta>as of {_e(stamp)}, refreshed every {REFRESH_S} s · <a href="/status.json">status.json</a></p>
<dl id=summary>{dl}</dl>
<h2>Island (gateways on this link)</h2>{island}
<h2>Leaders known</h2>{leaders}
<h2>Bridged services by site</h2><div id=services>{services}</div>
<h2>Relay (imports: direct or through the gateways)</h2><div id=relay>{relayed}</div>
<h2>Rejected and filtered</h2>{counts}
</body></html>
"""


async def serve_fronts(
    metrics_listen: str | None, http_listen: str | None, status: Callable[[], GatewayStatus]
) -> tuple[list[HttpServer], Metrics | None]:
    """Prometheus /metrics and the status page, each on its own listen address (or neither).

    Both read `status()`, the gateway's one snapshot.  A listen address that
    cannot be bound is a `LinkError` naming it (the CLI's one-line error).
    """
    from z2z.app.metrics import CONTENT_TYPE, Metrics

    metrics: Metrics | None = None
    servers: list[tuple[str, str, dict[str, Handler]]] = []
    if metrics_listen:
        registry = metrics = Metrics(status)
        servers.append(("metrics", metrics_listen, {"/metrics": lambda: (CONTENT_TYPE, registry.render())}))
    if http_listen:

        def page() -> tuple[str, bytes]:
            return "text/html; charset=utf-8", render_status_html(status().as_json()).encode()

        routes: dict[str, Handler] = {
            "/": page,
            "/index.html": page,
            "/status.json": lambda: json_body(status().as_json()),
        }
        servers.append(("status page", http_listen, routes))
    started: list[HttpServer] = []
    for what, listen, handlers in servers:
        server = HttpServer(listen, handlers)
        try:
            await server.start()
        except OSError as exc:
            for running in started:
                await running.close()
            raise LinkError(f"cannot serve the {what} on {listen}: {exc.strerror}") from None
        started.append(server)
        host, port = server.address
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        log.info("serving the %s on http://%s/", what, shown)
    return started, metrics
