#!/usr/bin/env python3
"""A lying OpenDHT REST proxy: forwards to a real one, or lies on command.

Integration tests put it between a z2z gateway and ``dhtnode --proxyserver`` and
switch it at run time between the truth and several ways of lying, to check that
the gateway survives a proxy that is slow, broken or hostile:

    python tests/tools/lying_proxy.py --listen 10.77.0.1:8090 --upstream http://10.77.0.1:8081

Commands on stdin, one a line:

    mode NAME    switch mode, for new requests and for streams already open
                 (an honest listen is cut so the client reconnects into the new mode)
    quit         exit (so does end of input)

One JSON line per event on stdout, each with a ``time.time()`` stamp ``t``:

    {"event": "listening", "t": ..., "address": "10.77.0.1:8090"}
    {"event": "request", "t": ..., "method": "GET", "path": "/key/<hex>/listen", "mode": "honest"}
    {"event": "mode", "t": ..., "mode": "junk"}
    {"event": "error", "t": ..., "error": "unknown mode 'x'", ...}

Modes:

    honest     forward everything, streaming (listens stay open, lines pass at once)
    slow       send nothing for --slow-seconds, then forward; a mode change ends the
               wait early and the request is served per the new mode
    http500    500 {"err":"internal lie"} to everything
    not-http   bytes that are not HTTP, then close
    reset      close at once with a RST (SO_LINGER 0), no answer
    junk       200 with wrong bodies: node info without node_id, a put answer that is
               not the value, gets of malformed lines, listens dripping them forever
    truncated  200 with a Content-Length larger than the half line sent, then close
    endless    200 and a body that never completes (node info, put) or never ends
               (get, listen: the same well-formed line again and again)

Responses are HTTP/1.0 (body ends at connection close), which is what lets an
endless listen be forwarded without knowing its length.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import random
import re
import select
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

MODES = ("honest", "slow", "http500", "not-http", "reset", "junk", "truncated", "endless")
KEY_PATH = re.compile(r"^/key/([^/]+)(/listen)?/?$")
MAX_BODY = 1024 * 1024  # request bodies z2z sends are < 1 KiB
CLIENT_POLL = 0.2  # how often to look for clients that went away
JUNK_INTERVAL = 0.2
ENDLESS_INTERVAL = 0.02
ENDLESS_LINE = b'{"data":"AAAA","id":"1"}\n'
ENDLESS_LINES_PER_CHUNK = 20  # one line per ~1 ms
# A drip: reads never time out, yet 16 KiB take ~20 s, past any sane whole-request deadline.
ENDLESS_DRIP = b" " * 16

_print_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout, flushed at once; handler threads share stdout, hence the lock."""
    line = json.dumps({"event": event, "t": time.time(), **fields}) + "\n"
    with _print_lock:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass  # the test that read us is gone; keep serving


def _shutdown(sock: socket.socket) -> None:
    """Wake a thread blocked on `sock` (shutdown interrupts recv, close does not)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _client_gone(sock: socket.socket) -> bool:
    """True if the client closed or reset: it only ever sends one request, so readable means EOF."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


def junk_lines() -> list[bytes]:
    """Lines an OpenDHT proxy would never send; the last is well formed but opaque noise."""
    noise = base64.b64encode(os.urandom(200)).decode("ascii")
    return [
        b"this is not json\n",
        b"\xff\xfe\x00 not utf-8 \x80\x81\n",
        b'[{"data": "AAAA", "id": "1"}]\n',
        b'{"data": 12345, "id": "1"}\n',
        b'{"data": "AAAA", "id": 1.5}\n',
        b'{"data": "AAAA", "id": "1", "expired": "yes"}\n',
        b'{"data": "!!! not base64 !!!", "id": "1"}\n',
        b'{"data": "AAAA", "id": "-1"}\n',
        b'{"data": "AAAA", "id": -7}\n',
        b'{"data": "AAAA", "id": "18446744073709551616"}\n',
        b'{"data": "AAAA", "id": "999999999999999999999999999999"}\n',
        b'{"data": "' + b"A" * 100_000 + b'", "id": "1"}\n',
        b"[" * 100_000 + b"\n",
        b"[" * 60_000 + b"\n",  # under a 64 KiB line bound: reaches the JSON parser's recursion
        json.dumps({"data": noise, "id": str(random.getrandbits(64))}).encode() + b"\n",
    ]


class Exchange:
    """One client request that a mode change or the client leaving may need to interrupt."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.wake = threading.Event()  # set on mode change or when the client is gone
        self.gone = False
        self.watch = False  # the request is read: readable client socket now means EOF
        self._lock = threading.Lock()
        self._upstream: socket.socket | None = None

    def set_upstream(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._upstream = sock
            if sock is not None and self.wake.is_set():
                _shutdown(sock)

    def interrupt(self) -> None:
        self.wake.set()
        with self._lock:
            if self._upstream is not None:
                _shutdown(self._upstream)


class State:
    """The current mode and the exchanges open under it."""

    def __init__(self, mode: str) -> None:
        self._lock = threading.Lock()
        self.mode = mode
        self._open: set[Exchange] = set()

    def begin(self, ex: Exchange) -> str:
        """Register `ex` and return its mode, atomically, so no mode change is missed."""
        with self._lock:
            self._open.add(ex)
            return self.mode

    def again(self, ex: Exchange) -> str:
        """The mode to continue `ex` with after a wake-up."""
        with self._lock:
            ex.wake.clear()
            return self.mode

    def end(self, ex: Exchange) -> None:
        with self._lock:
            self._open.discard(ex)

    def set_mode(self, mode: str) -> None:
        with self._lock:
            if mode == self.mode:
                return
            self.mode = mode
            for ex in self._open:
                ex.interrupt()

    def watch_clients(self) -> None:
        """Interrupt exchanges whose client left, so nothing is held for nobody (e.g. a silent listen)."""
        while True:
            time.sleep(CLIENT_POLL)
            with self._lock:
                watched = [ex for ex in self._open if ex.watch and not ex.gone]
            for ex in watched:
                if _client_gone(ex.client):
                    ex.gone = True
                    ex.interrupt()


class LyingServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        state: State,
        upstream_url: str,
        slow_seconds: float,
    ) -> None:
        self.address_family = family
        self.state = state
        self.upstream_url = upstream_url
        self.slow_seconds = slow_seconds
        self.upstream = httpx.Client(
            # No read timeout: an honest listen is silent until a value exists.
            timeout=httpx.Timeout(10.0, read=None),
            # A fresh connection per request, so its socket is known (trace) and can be cut.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            trust_env=False,
        )
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which may wait on DNS inside a test namespace.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError | ValueError):
            return  # a client that went away is routine here
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "lying-proxy"
    timeout = 60  # a client that stops reading ends its exchange instead of pinning a thread
    server: LyingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # stdout is for JSON lines; requests are logged as events

    # -- plumbing -------------------------------------------------------------
    def _serve(self) -> None:
        state = self.server.state
        ex = Exchange(self.connection)
        mode = state.begin(ex)
        try:
            emit("request", method=self.command, path=self.path, mode=mode)
            body = self._read_body()
            ex.watch = True
            self._run(mode, ex, body)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            pass
        finally:
            self.close_connection = True
            state.end(ex)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _serve

    def _run(self, mode: str, ex: Exchange, body: bytes | None) -> None:
        getattr(self, "_" + mode.replace("-", "_"))(ex, body)

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None
        return self.rfile.read(min(max(length, 0), MAX_BODY))

    def _kind(self) -> str:
        """What the request is in OpenDHT proxy terms: node, put, get, listen or other."""
        path = self.path.split("?", 1)[0]
        if path == "/":
            return "node"
        match = KEY_PATH.match(path)
        if match is None:
            return "other"
        if self.command == "POST" and not match.group(2):
            return "put"
        if self.command == "GET":
            return "listen" if match.group(2) else "get"
        return "other"

    def _head(self, status: int, length: int | None = None, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _reply(self, status: int, body: bytes) -> None:
        self._head(status, len(body))
        self.wfile.write(body)

    def _drip(self, ex: Exchange, chunk: Callable[[], bytes], interval: float) -> None:
        """Send a chunk every `interval` until the mode changes or the client leaves."""
        while not ex.wake.wait(interval):
            self.wfile.write(chunk())
            self.wfile.flush()

    # -- modes ----------------------------------------------------------------
    def _honest(self, ex: Exchange, body: bytes | None) -> None:
        headers = {"Accept-Encoding": "identity"}  # raw bytes pass through undecoded
        if ctype := self.headers.get("Content-Type"):
            headers["Content-Type"] = ctype

        def trace(name: str, info: dict[str, Any]) -> None:
            if name == "connection.connect_tcp.complete" and info.get("return_value") is not None:
                ex.set_upstream(info["return_value"].get_extra_info("socket"))

        started = False
        try:
            with self.server.upstream.stream(
                self.command,
                self.server.upstream_url + self.path,
                content=body,
                headers=headers,
                extensions={"trace": trace},
            ) as response:
                self.send_response(response.status_code)
                if ctype := response.headers.get("Content-Type"):
                    self.send_header("Content-Type", ctype)
                self.end_headers()
                started = True
                for chunk in response.iter_raw():
                    self.wfile.write(chunk)
                    self.wfile.flush()
        except httpx.HTTPError as exc:
            # Cut by a mode change, or the client left: just close.  Else say what broke.
            if not started and not ex.wake.is_set():
                self._reply(502, json.dumps({"err": f"lying_proxy: upstream: {exc!r}"}).encode())
        finally:
            ex.set_upstream(None)

    def _slow(self, ex: Exchange, body: bytes | None) -> None:
        deadline = time.monotonic() + self.server.slow_seconds
        while ex.wake.wait(max(deadline - time.monotonic(), 0)):
            if ex.gone:
                return
            mode = self.server.state.again(ex)
            if mode != "slow":
                self._run(mode, ex, body)
                return
        self._honest(ex, body)

    def _http500(self, ex: Exchange, body: bytes | None) -> None:
        self._reply(500, b'{"err":"internal lie"}')

    def _not_http(self, ex: Exchange, body: bytes | None) -> None:
        self.wfile.write(b"\x00\xffSSH-2.0-lies\r\n" + os.urandom(256))

    def _reset(self, ex: Exchange, body: bytes | None) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop makefile's reference, so close() below really closes: RST
        self.connection.close()
        self.wfile = io.BytesIO()  # what the server still flushes after us

    def _junk(self, ex: Exchange, body: bytes | None) -> None:
        kind = self._kind()
        if kind == "put":
            self._reply(200, b'{"ok": true}')
        elif kind == "get":
            self._head(200)
            for line in junk_lines():
                self.wfile.write(line)
        elif kind == "listen":
            self._head(200)
            lines: list[bytes] = []

            def next_line() -> bytes:
                if not lines:
                    lines.extend(reversed(junk_lines()))
                return lines.pop()

            self._drip(ex, next_line, JUNK_INTERVAL)
        else:
            self._reply(200, b'{"hello": "world"}')

    def _truncated(self, ex: Exchange, body: bytes | None) -> None:
        kind = self._kind()
        if kind in ("get", "listen"):
            self._head(200, 100_000)
            self.wfile.write(b'{"data": "AAAA", "id": "12')
        elif kind == "put":
            self._head(200, 1000)
            self.wfile.write(b'{"data": "')  # 10 bytes
        else:
            self._head(200, 1000)
            self.wfile.write(b'{"node_id": "ab')

    def _endless(self, ex: Exchange, body: bytes | None) -> None:
        self._head(200)
        if self._kind() in ("get", "listen"):
            lines = ENDLESS_LINE * ENDLESS_LINES_PER_CHUNK
            self._drip(ex, lambda: lines, ENDLESS_INTERVAL)
        else:
            self.wfile.write(b'{"data":')
            self._drip(ex, lambda: ENDLESS_DRIP, ENDLESS_INTERVAL)


def parse_listen(text: str) -> tuple[str, int, socket.AddressFamily]:
    """HOST:PORT or [V6HOST]:PORT → (host, port, family)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"--listen wants HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return host, int(port), family


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--listen", required=True, help="HOST:PORT to serve on ([v6]:port for IPv6; port 0 = any)")
    p.add_argument("--upstream", required=True, help="the real proxy, e.g. http://10.77.0.1:8081")
    p.add_argument("--slow-seconds", type=float, default=30.0, help="how long slow mode holds (default 30)")
    p.add_argument("--mode", choices=MODES, default="honest", help="mode at start (default honest)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    host, port, family = parse_listen(args.listen)
    state = State(args.mode)
    server = LyingServer((host, port), family, state, args.upstream.rstrip("/"), args.slow_seconds)
    bound_host, bound_port = server.socket.getsockname()[:2]
    shown = f"[{bound_host}]" if family == socket.AF_INET6 else bound_host
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    threading.Thread(target=state.watch_clients, daemon=True).start()
    emit("listening", address=f"{shown}:{bound_port}")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words == ["quit"]:
            break
        if words[0] == "mode" and len(words) == 2:
            if words[1] in MODES:
                state.set_mode(words[1])
                emit("mode", mode=words[1])
            else:
                emit("error", error=f"unknown mode {words[1]!r}", modes=list(MODES))
        else:
            emit("error", error=f"unknown command {line.strip()!r}", commands=["mode NAME", "quit"])
    server.shutdown()
    server.server_close()
    with _print_lock:
        sys.stdout.flush()
    # Handler threads may be blocked mid-stream; daemon threads at interpreter exit can
    # trip over stdout, so leave at once.
    os._exit(0)


if __name__ == "__main__":
    main()
