"""The relay channel on loopback: real TLS 1.3, real sockets, certificates derived from secrets.

Checks what the relay promises at the socket level: members connect and bytes
arrive intact both ways; a stream to anything but an exported service is
refused (and counted); a gateway of another network (another secret) cannot
complete the handshake; a peer whose site key is not the trusted one is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from z2z.adapters.relay import RelayConnector, RelayServer, StreamLimits, tls_contexts
from z2z.adapters.relay.pki import network_ca, site_certificate
from z2z.core.records import Service
from z2z.core.relay import RelayError, StreamRequest, exported_target
from z2z.core.relay.pool import SPARES_HIGH, SPARES_LOW
from z2z.core.security import Codec, public_key_bytes


def member(tmp: Path, name: str, secret: bytes, key: Ed25519PrivateKey | None = None) -> tuple:
    key = key or Ed25519PrivateKey.generate()
    seed = Codec("net", secret, key).relay_ca_seed()
    assert seed is not None
    ca_key, ca_cert = network_ca(seed, "net")
    cert = site_certificate(ca_key, ca_cert, name, key, time.time())
    cert_file, key_file = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(Encoding.PEM) + ca_cert.public_bytes(Encoding.PEM))
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    server, client = tls_contexts(ca_cert.public_bytes(Encoding.PEM).decode(), str(cert_file), str(key_file))
    return key, server, client


async def echo_service() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(int((await reader.readline()).decode()))
        writer.write(hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.asyncio
async def test_members_relay_bytes_intact_and_only_to_exports(tmp_path: Path) -> None:
    secret = os.urandom(32)
    a_key, a_server_ctx, _ = member(tmp_path, "a", secret)
    b_key, _, b_client_ctx = member(tmp_path, "b", secret)
    service, port = await echo_service()
    exports = [Service("_http._tcp", "Printer", "printer", port, addresses=("127.0.0.1",))]
    trusted = {"a": public_key_bytes(a_key), "b": public_key_bytes(b_key)}

    def authorize(site: str, key: bytes) -> str | None:
        return None if trusted.get(site) == key else "untrusted"

    refused: list[str] = []
    server = RelayServer(
        a_server_ctx,
        "127.0.0.1",
        0,
        site="a",
        authorize=authorize,
        target=lambda req, peer: exported_target(req, "a", exports),
        refused=lambda reason, detail: refused.append(reason),
    )
    relay_port = await server.start()
    endpoint = f"127.0.0.1:{relay_port}"
    connector = RelayConnector(b_client_ctx, authorize=authorize, limits=StreamLimits())
    stranger = impostor = connector
    try:
        assert await connector.ping(endpoint, "a")
        reader, writer = await connector.open(
            endpoint, StreamRequest("connect", "a", "_http._tcp", "Printer", port)
        )
        payload = os.urandom(3 * 1024 * 1024)
        writer.write(f"{len(payload)}\n".encode() + payload)
        await writer.drain()
        digest = (await reader.readline()).strip().decode()
        echoed = await reader.readexactly(len(payload))
        assert digest == hashlib.sha256(payload).hexdigest() and echoed == payload
        writer.close()

        with pytest.raises(RelayError, match="not-exported"):
            await connector.open(endpoint, StreamRequest("connect", "a", "_http._tcp", "Printer", 22))
        with pytest.raises(RelayError, match="not-exported"):
            await connector.open(endpoint, StreamRequest("connect", "a", "_http._tcp", "Fax", port))
        assert refused.count("not-exported") == 2

        # A peer expecting another site at this endpoint refuses it.
        with pytest.raises(RelayError, match="wrong-site"):
            await connector.open(endpoint, StreamRequest("connect", "c", "_http._tcp", "Printer", port))

        # Another secret: another CA; the handshake fails, nothing is carried.
        _, _, stranger_ctx = member(tmp_path, "b", os.urandom(32), b_key)
        stranger = RelayConnector(stranger_ctx, authorize=authorize, limits=StreamLimits())
        with pytest.raises(RelayError):
            await stranger.open(endpoint, StreamRequest("connect", "a", "_http._tcp", "Printer", port))

        # A member whose key is not the one trusted for its site name is refused.
        _, _, impostor_ctx = member(tmp_path, "b", secret, Ed25519PrivateKey.generate())
        impostor = RelayConnector(impostor_ctx, authorize=lambda s, k: None, limits=StreamLimits())
        with pytest.raises(RelayError):
            await impostor.open(endpoint, StreamRequest("connect", "a", "_http._tcp", "Printer", port))
        await asyncio.sleep(0.1)
        assert "untrusted-peer" in refused
        # Warm channels: a second stream reuses a channel handshaken ahead of need.
        await asyncio.sleep(0.6)
        assert connector._spares.get((endpoint, "a")), "no warm channel was kept"
        reader, writer = await connector.open(
            endpoint, StreamRequest("connect", "a", "_http._tcp", "Printer", port)
        )
        writer.write(b"3\nabc")
        assert (await reader.readline()).strip().decode() == hashlib.sha256(b"abc").hexdigest()
        writer.close()
    finally:
        for c in (connector, stranger, impostor):
            await c.close()
        await server.close()
        service.close()


async def _until(check: object, timeout: float = 10.0) -> bool:
    """Poll `check()` until true or `timeout` (behaviour, not timing: the bound is generous)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return False


class Relayed:
    """Sites "a" (a `RelayServer` exporting `exports`) and "b" (a `RelayConnector`), and a
    local port whose clients `carry` relays with the request `request()` returns."""

    def __init__(self, tmp_path: Path, exports: list[Service], request: Callable[[], StreamRequest]) -> None:
        secret = os.urandom(32)
        _, self.a_server_ctx, _ = member(tmp_path, "a", secret)
        _, _, b_client_ctx = member(tmp_path, "b", secret)
        self.refused: list[str] = []
        self.server = RelayServer(
            self.a_server_ctx,
            "127.0.0.1",
            0,
            site="a",
            authorize=lambda s, k: None,
            target=lambda req, peer: exported_target(req, "a", exports),
            refused=lambda reason, detail: self.refused.append(reason),
        )
        self.connector = RelayConnector(b_client_ctx, authorize=lambda s, k: None, limits=StreamLimits())
        self._request = request
        self.endpoint = ""
        self.port = 0
        self._proxy: asyncio.Server | None = None

    async def start(self) -> Relayed:
        self.endpoint = f"127.0.0.1:{await self.server.start()}"

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.connector.carry((reader, writer), self.endpoint, self._request())

        self._proxy = await asyncio.start_server(client, "127.0.0.1", 0)
        self.port = self._proxy.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
        await self.connector.close()
        await self.server.close()


@pytest.mark.asyncio
async def test_the_warm_pool_refills_after_each_stream_and_grows_with_demand(tmp_path: Path) -> None:
    """Clients' streams through `carry` find warm channels; the pool grows to the recent rate, bounded."""
    service, port = await echo_service()
    exports = [Service("_http._tcp", "Printer", "printer", port, addresses=("127.0.0.1",))]
    req = StreamRequest("connect", "a", "_http._tcp", "Printer", port)
    relayed = await Relayed(tmp_path, exports, lambda: req).start()
    server, connector, endpoint, proxy_port = (
        relayed.server,
        relayed.connector,
        relayed.endpoint,
        relayed.port,
    )

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(b"3\nabc")
        assert (await reader.readline()).strip().decode() == hashlib.sha256(b"abc").hexdigest()
        writer.close()

    try:
        connector.warm(endpoint, "a")  # what the health round does for a relayed site
        assert await _until(lambda: connector.spares(endpoint, "a") == SPARES_LOW)
        await one_client()
        assert (connector.warm_streams, connector.cold_streams) == (1, 0)
        # Refilled after the stream (at once, not after a fixed pause), back to the floor.
        assert await _until(lambda: connector.spares(endpoint, "a") == SPARES_LOW)
        # Six more clients in a row: the pool grows to the recent demand (7 in 2 s) ...
        for _ in range(6):
            await one_client()
        assert await _until(lambda: connector.spares(endpoint, "a") >= 6)
        assert connector.warm_streams + connector.cold_streams == 7
        # ... and a long run of clients never makes it hold more than its ceiling.
        await asyncio.gather(*(one_client() for _ in range(3 * SPARES_HIGH)))
        assert await _until(lambda: connector.spares(endpoint, "a") == SPARES_HIGH)
        await asyncio.sleep(0.3)
        assert connector.spares(endpoint, "a") == SPARES_HIGH
        assert connector.warm_streams + connector.cold_streams == 7 + 3 * SPARES_HIGH
        # Warm channels hold a stream slot on the exporting side, within its limit.
        assert server.streams["b"] == SPARES_HIGH
    finally:
        await relayed.close()
        service.close()


@pytest.mark.asyncio
async def test_a_clients_first_bytes_follow_the_request_and_survive_a_stale_warm_channel(
    tmp_path: Path,
) -> None:
    """Early bytes: sent behind the request, resent on a fresh channel when the warm one was dead."""
    service, port = await echo_service()
    exports = [Service("_http._tcp", "Printer", "printer", port, addresses=("127.0.0.1",))]
    requests = {
        "ok": StreamRequest("connect", "a", "_http._tcp", "Printer", port),
        "refused": StreamRequest("connect", "a", "_http._tcp", "Printer", 22),
    }
    current = ["ok"]
    relayed = await Relayed(tmp_path, exports, lambda: requests[current[0]]).start()
    connector, endpoint, proxy_port, refused = (
        relayed.connector,
        relayed.endpoint,
        relayed.port,
        relayed.refused,
    )

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # a relay that went away after the handshake: reads, answers nothing
        writer.close()

    dead = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=relayed.a_server_ctx)
    dead_endpoint = f"127.0.0.1:{dead.sockets[0].getsockname()[1]}"
    payload = os.urandom(200 * 1024)  # more than EARLY_MAX: the rest follows once accepted

    async def one_client() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(f"{len(payload)}\n".encode() + payload)
        line = await asyncio.wait_for(reader.readline(), 20)  # a lost byte would hang the echo
        writer.close()
        return line.strip()

    try:
        stale = await connector._handshake(dead_endpoint, "a", 5.0)  # certificate of site "a"
        connector._spares[(endpoint, "a")] = [(*stale, time.monotonic())]
        assert await one_client() == hashlib.sha256(payload).hexdigest().encode()
        assert (connector.warm_streams, connector.cold_streams) == (0, 1)
        # Through a good warm channel the same bytes arrive intact.
        assert await _until(lambda: connector.spares(endpoint, "a") >= 1)
        assert await one_client() == hashlib.sha256(payload).hexdigest().encode()
        assert connector.warm_streams == 1
        # A refused stream: the early bytes are never passed to any service; the client is closed.
        current[0] = "refused"
        assert await one_client() == b""
        assert refused == ["not-exported"]
    finally:
        dead.close()
        await relayed.close()
        service.close()


@pytest.mark.asyncio
async def test_a_service_that_speaks_first_is_not_kept_waiting_for_early_bytes(tmp_path: Path) -> None:
    """SMTP/FTP style: the client sends nothing until the banner, and the banner comes through."""

    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\n")
        line = await reader.readline()
        writer.write(b"250 " + line)
        await writer.drain()
        writer.close()

    service = await asyncio.start_server(banner, "127.0.0.1", 0)
    port = service.sockets[0].getsockname()[1]
    exports = [Service("_smtp._tcp", "Mail", "mail", port, addresses=("127.0.0.1",))]
    req = StreamRequest("connect", "a", "_smtp._tcp", "Mail", port)
    relayed = await Relayed(tmp_path, exports, lambda: req).start()
    connector, endpoint = relayed.connector, relayed.endpoint
    try:
        connector.warm(endpoint, "a")
        assert await _until(lambda: connector.spares(endpoint, "a") >= 1)
        for _ in range(2):  # through a warm channel, then whatever the pool has
            reader, writer = await asyncio.open_connection("127.0.0.1", relayed.port)
            assert await asyncio.wait_for(reader.readline(), 10) == b"220 ready\n"
            writer.write(b"HELO b\n")
            assert await asyncio.wait_for(reader.readline(), 10) == b"250 HELO b\n"
            writer.close()
        assert connector.warm_streams >= 1
    finally:
        await relayed.close()
        service.close()
