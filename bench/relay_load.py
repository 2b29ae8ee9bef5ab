"""The load of the relay benchmark, run inside the testbed's namespaces (``python -m bench.relay_load``).

``serve``: a TCP service; each connection sends one line, ``SINK n`` (then n
bytes; the answer ``ok``) or ``PING`` (the answer ``pong``).  ``load``: against
``HOST PORT``, `--trials` rounds of `--streams` parallel connections each
sending `--mb` MB (throughput, MB/s of the round), and `--pings` fresh
connections timed from connect() to ``pong`` (connect latency).  One JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

CHUNK = 256 * 1024


async def serve(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode().split()
            if line[:1] == ["SINK"]:
                left = int(line[1])
                while left > 0:
                    data = await reader.read(min(left, CHUNK))
                    if not data:
                        break
                    left -= len(data)
                writer.write(b"ok\n")
            else:
                writer.write(b"pong\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port)
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    async with server:
        await server.serve_forever()


async def one_stream(host: str, port: int, size: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"SINK {size}\n".encode())
    block = b"\0" * CHUNK
    left = size
    while left > 0:
        n = min(left, CHUNK)
        writer.write(block[:n])
        await writer.drain()
        left -= n
    assert (await reader.readline()) == b"ok\n"
    writer.close()


async def load(
    host: str, port: int, streams: int, mb: float, trials: int, pings: int, gap: float = 0.0
) -> dict[str, object]:
    size = int(mb * 1e6)
    rates = []
    for _ in range(trials):
        t0 = time.perf_counter()
        await asyncio.gather(*(one_stream(host, port, size) for _ in range(streams)))
        rates.append(streams * size / 1e6 / (time.perf_counter() - t0))
    latencies = []
    for _ in range(pings):
        if gap:
            await asyncio.sleep(gap / 1000)
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"PING\n")
        assert (await reader.readline()) == b"pong\n"
        latencies.append((time.perf_counter() - t0) * 1000)
        writer.close()
    return {"event": "result", "mb_per_s": rates, "connect_ms": latencies}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=9000)
    c = sub.add_parser("load")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--streams", type=int, default=1)
    c.add_argument("--mb", type=float, default=20.0)
    c.add_argument("--trials", type=int, default=5)
    c.add_argument("--pings", type=int, default=0)
    c.add_argument("--gap", type=float, default=0.0, help="ms between connects (0: back to back)")
    a = p.parse_args()
    if a.cmd == "serve":
        asyncio.run(serve(a.port))
    else:
        out = asyncio.run(load(a.host, a.port, a.streams, a.mb, a.trials, a.pings, a.gap))
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
