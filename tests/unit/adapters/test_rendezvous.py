"""Rendezvous adapters against real dhtnodes, a lying HTTP server and in-process nodes.

Everything listens on 127.0.0.1 (and ::1 for embedded nodes); nothing leaves the host.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support.dhtnet import DhtNetwork, free_port

from z2z.adapters.rendezvous import (
    DEFAULT_BOOTSTRAP,
    DhtValue,
    EmbeddedRendezvous,
    ProxyRendezvous,
    PutNotConfirmed,
    RendezvousError,
    open_rendezvous,
    parse_bootstrap,
)
from z2z.adapters.rendezvous.base import AnswerTooBig, ConditionLog
from z2z.adapters.rendezvous.proxy import iter_lines, parse_value_line

needs_dhtnode = pytest.mark.skipif(shutil.which("dhtnode") is None, reason="needs dhtnode")

try:
    import opendht  # noqa: F401

    HAVE_OPENDHT = True
except ImportError:
    HAVE_OPENDHT = False
needs_opendht = pytest.mark.skipif(not HAVE_OPENDHT, reason="needs the opendht Python module")


def new_key() -> bytes:
    return hashlib.sha1(f"z2z-test/{uuid.uuid4()}".encode()).digest()


def fast_proxy(url: str, **kw: float) -> ProxyRendezvous:
    """A proxy adapter with test-sized timeouts and backoff."""
    opts: dict[str, float] = {
        "timeout": 2.0,
        "get_deadline": 3.0,
        "backoff_initial": 0.05,
        "backoff_cap": 0.5,
    }
    opts.update(kw)
    return ProxyRendezvous(url, **opts)  # type: ignore[arg-type]


class Collector:
    """A listen callback that remembers what arrived and lets a test wait for it."""

    def __init__(self) -> None:
        self.items: list[tuple[DhtValue, bool, float]] = []
        self.event = asyncio.Event()

    def __call__(self, value: DhtValue, expired: bool) -> None:
        self.items.append((value, expired, time.monotonic()))
        self.event.set()

    def ids(self) -> set[int]:
        return {v.id for v, _, _ in self.items}

    async def wait_for(self, value_id: int, timeout: float) -> float:
        """Wait until `value_id` arrived; return when (monotonic)."""
        async with asyncio.timeout(timeout):
            while True:
                for v, _, at in self.items:
                    if v.id == value_id:
                        return at
                self.event.clear()
                await self.event.wait()


# --------------------------------------------------------------------------------------
# Real two-node dhtnode network


@needs_dhtnode
async def test_put_via_one_proxy_get_via_the_other(dht_network: DhtNetwork) -> None:
    a, b = (fast_proxy(u) for u in dht_network.proxy_urls)
    try:
        await a.start()
        await b.start()
        key, vid = new_key(), 2**64 - 2  # ids above 2**53 must survive JSON
        await a.put(key, vid, b"\x00printer\xff")
        assert await b.get(key) == [DhtValue(vid, b"\x00printer\xff")]
        assert await b.get(new_key()) == []
        info = await a.node_info()
        assert len(info["node_id"]) == 40 and info["peers"] >= 1
    finally:
        await a.close()
        await b.close()


@needs_dhtnode
async def test_listen_sees_a_remote_put_within_a_second(dht_network: DhtNetwork) -> None:
    a, b = (fast_proxy(u) for u in dht_network.proxy_urls)
    key, got = new_key(), Collector()
    try:
        await a.put(key, 1, b"old")
        handle = b.listen(key, got)
        await got.wait_for(1, 2.0)  # values stored before the listen are replayed
        sent = time.monotonic()
        await a.put(key, 2, b"new")
        arrived = await got.wait_for(2, 1.0)
        assert arrived - sent < 1.0
        assert (DhtValue(2, b"new"), False) in [(v, e) for v, e, _ in got.items]
        handle.cancel()
        await a.put(key, 3, b"after cancel")
        await asyncio.sleep(0.3)
        assert 3 not in got.ids()
    finally:
        await a.close()
        await b.close()


@needs_dhtnode
async def test_listen_survives_a_rendezvous_restart(
    dht_network: DhtNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="z2z.adapters.rendezvous.proxy")
    a, b = (fast_proxy(u, backoff_cap=0.3) for u in dht_network.proxy_urls)
    key, got = new_key(), Collector()
    try:
        b.listen(key, got)
        await a.put(key, 10, b"before")
        await got.wait_for(10, 2.0)
        # Both nodes die; the listener spins in backoff while nothing answers.
        await asyncio.to_thread(dht_network.stop)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(dht_network.start)
        await a.put(key, 11, b"after")
        await got.wait_for(11, 3.0)
        assert b.stats["listen_reconnects"] >= 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        # Logged once per condition (stream broke, connection refused), not per retry.
        assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]
        assert any("works again" in r.getMessage() for r in caplog.records)
    finally:
        await a.close()
        await b.close()


@needs_dhtnode
async def test_lone_node_put_is_not_confirmed(tmp_path: Path) -> None:
    """A dhtnode without peers answers 502; the adapter says so with PutNotConfirmed."""
    lone = await asyncio.to_thread(DhtNetwork(tmp_path, nodes=1).start)
    proxy = fast_proxy(lone.proxy_urls[0])
    try:
        key = new_key()
        with pytest.raises(PutNotConfirmed, match="502"):
            await proxy.put(key, 1, b"x")
        assert await proxy.get(key) == [DhtValue(1, b"x")]  # ...but it kept the value
    finally:
        await proxy.close()
        lone.stop()


async def test_dead_proxy_fails_fast() -> None:
    proxy = fast_proxy(f"http://127.0.0.1:{free_port()}")
    try:
        began = time.monotonic()
        with pytest.raises(RendezvousError, match="unreachable"):
            await proxy.start()
        with pytest.raises(RendezvousError):
            await proxy.get(new_key())
        with pytest.raises(RendezvousError):
            await proxy.put(new_key(), 1, b"x")
        with pytest.raises(RendezvousError):
            await proxy.node_info()
        assert time.monotonic() - began < 1.0
    finally:
        await proxy.close()


# --------------------------------------------------------------------------------------
# A lying proxy


Respond = Callable[[str, str, asyncio.StreamWriter], Awaitable[None]]


def head(status: int = 200, extra: str = "") -> bytes:
    reason = {200: "OK", 500: "Internal Server Error", 502: "Bad Gateway"}.get(status, "X")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


def line(value_id: object, data: bytes = b"v", **extra: object) -> bytes:
    obj = {"data": base64.b64encode(data).decode(), "id": value_id, "type": 0, **extra}
    return json.dumps(obj).encode() + b"\n"


class LyingServer:
    """A tiny HTTP/1.1 server on 127.0.0.1 whose answers each test scripts."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.requests: list[tuple[str, str]] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> LyingServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            method, path = request.decode().split(" ")[:2]
            for header in request.decode().split("\r\n"):
                if header.lower().startswith("content-length:"):
                    await reader.readexactly(int(header.split(":")[1]))
            self.requests.append((method, path))
            await self.respond(method, path, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


GARBAGE = b"".join(
    [
        line("1", b"a"),
        b"not json\n",
        b"[1, 2, 3]\n",
        b'{"data": 5, "id": "2"}\n',
        b'{"data": "!!!not base64", "id": "3"}\n',
        line("abc"),
        line("-1"),
        line(str(2**64)),
        line(True),
        line("5", expired="yes"),
        b'{"id": "6"}\n',
        b"\xff\xfe\xfd\n",
        b"x" * 70_000 + b"\n",
        b"\n\n",
        line(str(2**64 - 1), b"b"),
        line("1", b"a"),  # duplicate: reported once
        line("7", b"gone", expired=True),  # expired values are not current values
    ]
)


async def serve_garbage(method: str, path: str, w: asyncio.StreamWriter) -> None:
    w.write(head() + GARBAGE + line("8", b"tail-without-newline").rstrip(b"\n"))


async def serve_complete_garbage(method: str, path: str, w: asyncio.StreamWriter) -> None:
    w.write(head() + GARBAGE)


async def test_get_skips_and_counts_garbage_lines(caplog: pytest.LogCaptureFixture) -> None:
    async with LyingServer(serve_complete_garbage) as srv:
        proxy = fast_proxy(srv.url)
        try:
            values = await proxy.get(new_key())
            values_again = await proxy.get(new_key())
        finally:
            await proxy.close()
    assert sorted(values, key=lambda v: v.id) == [DhtValue(1, b"a"), DhtValue(2**64 - 1, b"b")]
    assert values_again == values
    assert proxy.stats == Counter(bad_json=6, bad_field=6, bad_base64=2, bad_id=8, oversize_line=2)
    junk = [r for r in caplog.records if "junk values" in r.getMessage()]
    assert len(junk) == 1 and junk[0].levelno == logging.WARNING  # 24 refused lines, one log line


async def test_a_get_ending_inside_a_line_is_partial_and_raises() -> None:
    async with LyingServer(serve_garbage) as srv:  # the last line has no newline
        proxy = fast_proxy(srv.url)
        try:
            with pytest.raises(RendezvousError, match="ends inside a line") as err:
                await proxy.get(new_key())
        finally:
            await proxy.close()
    assert err.value.condition == "truncated answer"
    assert proxy.stats["truncated_line"] == 1


async def test_listen_delivers_only_sane_values_and_reconnects_after_the_stream_ends() -> None:
    async with LyingServer(serve_garbage) as srv:
        proxy = fast_proxy(srv.url)
        got = Collector()
        try:
            handle = proxy.listen(new_key(), got)
            async with asyncio.timeout(3):
                while len(srv.requests) < 3:  # the stream ends: reconnect, replayed
                    await asyncio.sleep(0.02)
            handle.cancel()
            n = len(got.items)
            await asyncio.sleep(0.2)
            assert len(got.items) == n  # nothing after cancel
        finally:
            await proxy.close()
    assert {(v.id, v.data, e) for v, e, _ in got.items} == {
        (1, b"a", False),
        (2**64 - 1, b"b", False),
        (7, b"gone", True),
    }
    assert proxy.stats["listen_reconnects"] >= 2


async def test_truncated_stream_raises() -> None:
    async def respond(method: str, path: str, w: asyncio.StreamWriter) -> None:
        w.write(head(extra="Content-Length: 5000\r\n") + line("1"))

    async with LyingServer(respond) as srv:
        proxy = fast_proxy(srv.url)
        try:
            with pytest.raises(RendezvousError, match="get from"):
                await proxy.get(new_key())
        finally:
            await proxy.close()


async def endless_line(method: str, path: str, w: asyncio.StreamWriter) -> None:
    w.write(head())
    while True:
        w.write(b"a" * 8192)
        await w.drain()
        await asyncio.sleep(0.001)


async def test_never_ending_line_hits_the_get_deadline() -> None:
    async with LyingServer(endless_line) as srv:
        proxy = fast_proxy(srv.url, get_deadline=1.0)
        try:
            began = time.monotonic()
            with pytest.raises(RendezvousError, match="not finished"):
                await proxy.get(new_key())
            assert time.monotonic() - began < 2.0
        finally:
            await proxy.close()
    assert proxy.stats["oversize_line"] == 1  # one endless line, dropped with bounded memory


async def test_never_ending_line_on_a_listen_is_dropped_and_cancel_is_prompt() -> None:
    async with LyingServer(endless_line) as srv:
        proxy = fast_proxy(srv.url)
        got = Collector()
        try:
            handle = proxy.listen(new_key(), got)
            await asyncio.sleep(0.5)
            handle.cancel()
            assert handle.task is not None
            done, _ = await asyncio.wait([handle.task], timeout=1.0)
            assert done
        finally:
            await proxy.close()
    assert got.items == [] and proxy.stats["oversize_line"] == 1


async def test_endless_stream_of_values_is_capped() -> None:
    async def respond(method: str, path: str, w: asyncio.StreamWriter) -> None:
        w.write(head())
        for i in range(1_000_000):
            w.write(line(str(i)))
            if i % 100 == 0:
                await w.drain()

    async with LyingServer(respond) as srv:
        proxy = fast_proxy(srv.url, max_values=500)
        try:
            with pytest.raises(RendezvousError, match="more than 500 values"):
                await proxy.get(new_key())
        finally:
            await proxy.close()


async def test_an_answer_over_the_cap_is_its_own_condition_with_the_values_read() -> None:
    async def respond(method: str, path: str, w: asyncio.StreamWriter) -> None:
        w.write(head())
        for i in range(1, 2000):
            w.write(line(str(i)))
        await w.drain()

    async with LyingServer(respond) as srv:
        proxy = fast_proxy(srv.url, max_values=500)
        try:
            with pytest.raises(AnswerTooBig) as caught:
                await proxy.get(new_key())
            assert len(caught.value.values) == 500  # what was read, for the caller to use
            assert caught.value.condition == "answer too big"
            assert proxy.trouble.failing == []  # the proxy answers: no outage is reported
        finally:
            await proxy.close()


async def test_http_errors_raise_and_a_failing_listen_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def respond(method: str, path: str, w: asyncio.StreamWriter) -> None:
        status = 502 if method == "POST" and path.endswith("/502") else 500
        w.write(head(status) + b'{"err":"boom"}')

    caplog.set_level(logging.INFO, logger="z2z.adapters.rendezvous.proxy")
    async with LyingServer(respond) as srv:
        proxy = fast_proxy(srv.url, backoff_initial=0.01, backoff_cap=0.05)
        try:
            with pytest.raises(RendezvousError, match="HTTP 500"):
                await proxy.start()
            with pytest.raises(RendezvousError, match="HTTP 500") as err:
                await proxy.put(new_key(), 1, b"x")
            assert not isinstance(err.value, PutNotConfirmed)
            with pytest.raises(RendezvousError, match="HTTP 500"):
                await proxy.get(new_key())
            proxy.listen(new_key(), Collector())
            async with asyncio.timeout(5):
                while proxy.stats["listen_reconnects"] < 5:
                    await asyncio.sleep(0.02)
        finally:
            await proxy.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0].getMessage()


async def test_silent_server_times_out() -> None:
    async def respond(method: str, path: str, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    async with LyingServer(respond) as srv:
        proxy = fast_proxy(srv.url, timeout=0.3, get_deadline=0.5)
        try:
            began = time.monotonic()
            for op in (proxy.start(), proxy.put(new_key(), 1, b"x"), proxy.get(new_key())):
                with pytest.raises(RendezvousError):
                    await op
            assert time.monotonic() - began < 2.5
        finally:
            await proxy.close()


async def test_something_else_than_a_proxy_is_refused() -> None:
    async def respond(method: str, path: str, w: asyncio.StreamWriter) -> None:
        w.write(head() + b"<html>hello</html>")

    async with LyingServer(respond) as srv:
        proxy = fast_proxy(srv.url)
        try:
            with pytest.raises(RendezvousError, match="does not look like an OpenDHT proxy"):
                await proxy.start()
        finally:
            await proxy.close()


def test_parse_value_line_accepts_exactly_the_proxy_shape() -> None:
    stats: Counter[str] = Counter()
    assert parse_value_line(b'{"data":"aGk=","id":"42","type":0}', stats) == (
        DhtValue(42, b"hi"),
        False,
    )
    assert parse_value_line(b'{"data":"","id":42,"expired":true}', stats) == (
        DhtValue(42, b""),
        True,
    )
    for bad in (b'{"data":"aGk=","id":"4 2"}', b'{"data":"aGk=","id":"\xd9\xa1"}', b"null"):
        assert parse_value_line(bad, stats) is None
    assert not stats["ok"]


async def test_iter_lines_bounds_memory() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"ab", b"c\nd", b"x" * 100, b"y" * 100, b"\nok\n", b"z" * 50):
            yield part

    stats: Counter[str] = Counter()
    got = [ln async for ln in iter_lines(chunks(), 64, stats)]
    assert got == [b"abc", b"ok"]
    assert stats == Counter(oversize_line=1, truncated_line=1)


# --------------------------------------------------------------------------------------
# Embedded OpenDHT node


def embedded(bootstrap: list[tuple[str, int]], **kw: object) -> EmbeddedRendezvous:
    # Both families bound: an IPv4-only OpenDHT node cannot cancel a listen.
    opts: dict[str, object] = {"ipv4": "127.0.0.1", "ipv6": "::1", "bootstrap_timeout": 5.0}
    opts.update(kw)
    return EmbeddedRendezvous(bootstrap, **opts)  # type: ignore[arg-type]


@needs_opendht
@needs_dhtnode
async def test_embedded_node_joins_a_dhtnode_network(dht_network: DhtNetwork) -> None:
    node = embedded(dht_network.bootstrap[:1])
    a, b = (fast_proxy(u) for u in dht_network.proxy_urls)
    got = Collector()
    try:
        await node.start()
        info = await node.node_info()
        assert info["peers"] >= 1 and len(info["node_id"]) == 40

        key = new_key()
        await node.put(key, 21, b"from embedded")
        assert DhtValue(21, b"from embedded") in await b.get(key)

        node.listen(key, got)
        await a.put(key, 22, b"from proxy")
        await got.wait_for(22, 2.0)
        assert {DhtValue(21, b"from embedded"), DhtValue(22, b"from proxy")} <= set(await node.get(key))
    finally:
        await node.close()
        await a.close()
        await b.close()


@needs_opendht
async def test_two_embedded_nodes_put_get_listen_cancel() -> None:
    first = embedded([])
    await first.start()
    second = embedded([("127.0.0.1", first.bound_port or 0)])
    got, other = Collector(), Collector()
    try:
        await second.start()
        assert (await second.node_info())["peers"] >= 1
        key = new_key()
        handle = second.listen(key, got)
        second.listen(key, other)  # a second listen: the binding's shared-token quirk
        await first.put(key, 2**64 - 1, b"\x00\xff")
        await got.wait_for(2**64 - 1, 2.0)
        assert await second.get(key) == [DhtValue(2**64 - 1, b"\x00\xff")]

        handle.cancel()
        await first.put(key, 5, b"after cancel")
        await other.wait_for(5, 2.0)
        await asyncio.sleep(0.2)
        assert 5 not in got.ids()
    finally:
        await second.close()
        await first.close()


@needs_opendht
async def test_embedded_lone_node_and_foreign_network(caplog: pytest.LogCaptureFixture) -> None:
    lone = embedded([])
    await lone.start()
    # Another OpenDHT network id never pairs: start gives up waiting, does not hang.
    foreign = embedded([("127.0.0.1", lone.bound_port or 0)], network_id=7, bootstrap_timeout=0.5)
    try:
        key = new_key()
        with pytest.raises(PutNotConfirmed):
            await lone.put(key, 1, b"kept locally")
        with pytest.raises(RendezvousError):  # no complete answer without peers
            await lone.get(key)
        assert (await lone.node_info())["peers"] == 0
        began = time.monotonic()
        await foreign.start()
        assert time.monotonic() - began < 2.0
        assert "no bootstrap node answered" in caplog.text
    finally:
        await foreign.close()
        await lone.close()


@needs_opendht
async def test_embedded_needs_start_and_a_free_port() -> None:
    node = EmbeddedRendezvous([])
    with pytest.raises(RendezvousError, match="not running"):
        await node.get(new_key())
    await node.close()  # closing a node that never ran is fine
    first = embedded([])
    await first.start()
    try:
        # OpenDHT aborts the whole process on a bind failure: this must be caught first.
        with pytest.raises(RendezvousError, match="cannot bind"):
            await embedded([], port=first.bound_port).start()
    finally:
        await first.close()


# --------------------------------------------------------------------------------------
# URLs


def test_open_rendezvous_picks_the_backend() -> None:
    proxy = open_rendezvous("http://127.0.0.1:8080/")
    assert isinstance(proxy, ProxyRendezvous) and proxy.base_url == "http://127.0.0.1:8080"
    node = open_rendezvous("opendht://10.0.0.1,[::1]:4333,dht.example:5000?port=4230&network=3")
    assert isinstance(node, EmbeddedRendezvous)
    assert node.bootstrap == [("10.0.0.1", 4222), ("::1", 4333), ("dht.example", 5000)]
    assert (node.port, node.network_id) == (4230, 3)
    default = open_rendezvous(None)
    assert isinstance(default, EmbeddedRendezvous)
    assert default.bootstrap == [DEFAULT_BOOTSTRAP] == [("bootstrap.jami.net", 4222)]


@pytest.mark.parametrize(
    "url",
    [
        "",
        "127.0.0.1:8080",
        "ftp://host",
        "http://",
        "http://host:port",
        "http://host:8080?x=1",
        "opendht://",
        "opendht://host:0",
        "opendht://host:99999",
        "opendht://host,,other",
        "opendht://::1:4222",
        "opendht://[::1",
        "opendht://host?colour=red",
        "opendht://host?port=x",
    ],
)
def test_open_rendezvous_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        open_rendezvous(url)


def test_parse_bootstrap() -> None:
    assert parse_bootstrap("a:1, b") == [("a", 1), ("b", 4222)]
    with pytest.raises(ValueError, match="bad port"):
        parse_bootstrap("a:")


async def test_a_put_answered_200_without_the_stored_value_is_not_a_put() -> None:
    async def respond(method: str, path: str, w: asyncio.StreamWriter) -> None:
        w.write(head() + (b'{"ok": true}' if method == "POST" else b""))

    async with LyingServer(respond) as srv:
        proxy = fast_proxy(srv.url)
        try:
            with pytest.raises(RendezvousError, match="without the stored value") as err:
                await proxy.put(new_key(), 42, b"value")
        finally:
            await proxy.close()
    assert err.value.condition == "put not echoed"


async def test_an_echo_of_another_value_is_not_a_put_either() -> None:
    async def respond(method: str, path: str, w: asyncio.StreamWriter) -> None:
        w.write(head() + line("42", b"something else"))

    async with LyingServer(respond) as srv:
        proxy = fast_proxy(srv.url)
        try:
            with pytest.raises(RendezvousError, match="without the stored value"):
                await proxy.put(new_key(), 42, b"value")
        finally:
            await proxy.close()


async def test_a_listen_repeating_itself_delivers_each_value_once() -> None:
    async def respond(method: str, path: str, w: asyncio.StreamWriter) -> None:
        w.write(head())
        for _ in range(2000):
            w.write(line("1", b"same") * 5 + line("2", b"other"))
            await w.drain()
        await asyncio.sleep(10)

    async with LyingServer(respond) as srv:
        proxy = fast_proxy(srv.url)
        got = Collector()
        try:
            proxy.listen(new_key(), got)
            async with asyncio.timeout(5):
                while proxy.stats["repeated_value"] < 11_998:
                    await asyncio.sleep(0.02)
        finally:
            await proxy.close()
    assert sorted(v.id for v, _, _ in got.items) == [1, 2]


def test_condition_log_logs_each_condition_once_until_every_op_worked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    trouble = ConditionLog(logging.getLogger("t"), "proxy", quiet=30.0, rearm=60.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="t")
    for _ in range(100):
        for op in ("put", "get", "listen"):
            trouble.failed(op, "HTTP 500", "boom")
    trouble.failed("put", "timeout", "slow")
    assert trouble.failing == ["HTTP 500", "timeout"] and trouble.counts["HTTP 500"] == 300
    trouble.worked("get")
    trouble.worked("listen")
    trouble.failed("get", "HTTP 500", "again")  # put never worked: still the same outage
    trouble.worked("put")
    assert trouble.failing == ["HTTP 500"]  # get met it again since
    trouble.worked("get")
    assert trouble.failing == []
    trouble.failed("listen", "HTTP 500", "a new outage")
    for _ in range(50):
        trouble.failed("get", "junk values", "bad_json", transient=False)
    now[0] = 61.0
    trouble.failed("get", "junk values", "bad_json", transient=False)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m.split(" (")[0] for m in messages] == [
        "proxy: HTTP 500",
        "proxy: timeout",
        "proxy: HTTP 500",
        "proxy: junk values",
        "proxy: junk values",
    ]
    assert sum("works again" in r.getMessage() for r in caplog.records) == 2
    # a condition that has not recurred for `quiet` seconds is over, even if its op never proved itself
    assert trouble.failing == []
    assert sum("works again" in r.getMessage() for r in caplog.records) == 3
