"""Queries per second of the unicast DNS-SD server, beside dnslib's stock threaded server.

Run from the repository root:  ``.venv/bin/python -m bench.dns_throughput [--trials 5] [--duration 3]``

What is measured.  A zone of `--services` services (5 types, so ``_ipp._tcp`` has
services/5 instances) is served on 127.0.0.1 by

* ``z2z``: `z2z.adapters.dns.DnsSdServer` (asyncio UDP, answer cache), in this process;
* ``dnslib``: ``dnslib.server.DNSServer`` (socketserver, one thread per query) in
  this process, with a resolver that answers from a dict the very records z2z
  sends for the same query (same answer, additional and OPT records), so the
  difference is the serving machinery, not the record set.

Two workloads: ``ptr`` (only ``PTR _ipp._tcp.<domain>``) and ``mix`` (PTR of each
type, SRV and TXT of each instance, A of each host, shuffled).  Queries carry an
EDNS0 OPT (``dnsperf -e``), as dig and real stub resolvers do.

Load tool.  dnsperf (Debian package ``dnsperf``) when installed: ``-l DURATION -c
CLIENTS -q OUTSTANDING -t 1 -e -v``, no ``-Q`` (no rate limit); queries per second
come from its "Queries per second" line, latency percentiles from the per-response
lines of ``-v`` (written to a file and read after the trial).  Without dnsperf, a
built-in load generator runs in a separate Python process (`_loadgen`): CLIENTS
UDP sockets, each keeping OUTSTANDING/CLIENTS queries in flight, counting replies
and their latency, and forgetting a query after 1 s (counted as lost).  It is
slower than dnsperf, so its figures are lower bounds; the table says which tool ran.

Each (server, workload) pair runs a short warm-up, then `--trials` trials; the
table shows median and p5/p95 of qps over trials and latency percentiles over all
responses.  Both servers and the load tool share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dnslib import EDNS0, QTYPE, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from bench.stats import pct
from z2z.adapters.dns import DnsSdServer, DnsSdZone
from z2z.core.records import Service

DOMAIN = "campus.example."
TYPES = ("_ipp._tcp", "_http._tcp", "_printer._tcp", "_smb._tcp", "_ssh._tcp")


def make_services(n: int) -> list[Service]:
    """`n` services over five types; LDH instance names, because dnsperf 2.10 misreads ``\\DDD`` escapes."""
    return [
        Service(
            TYPES[i % len(TYPES)],
            f"Device-{i:03d}",
            f"host{i:03d}",
            631 + i % len(TYPES),
            (b"txtvers=1", f"note=room {i}".encode()),
            (f"10.20.{i // 250}.{i % 250 + 1}",),
        )
        for i in range(n)
    ]


def workloads(services: Sequence[Service]) -> dict[str, list[tuple[str, str]]]:
    """Query lists (name, type) for the ``ptr`` and ``mix`` workloads."""
    mix = [(f"{t}.{DOMAIN}", "PTR") for t in TYPES]
    for s in services:
        mix += [(f"{s.instance}.{s.type}.{DOMAIN}", "SRV"), (f"{s.instance}.{s.type}.{DOMAIN}", "TXT")]
        mix.append((f"{s.host}.{DOMAIN}", "A"))
    random.Random(6763).shuffle(mix)
    return {"ptr": [(f"_ipp._tcp.{DOMAIN}", "PTR")], "mix": mix}


# --- dnslib's stock server, answering the same records from memory ---------------------------


class _SilentLogger(DNSLogger):
    """dnslib's default logger prints every query; printing is not what we measure."""

    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


class MemoryResolver(BaseResolver):
    """Answers from a dict built once from the zone's own responses (rcode, sections) per question."""

    def __init__(self, zone: DnsSdZone, questions: Sequence[tuple[str, str]]) -> None:
        self.table: dict[tuple[DNSLabel, int], tuple[int, list[Any], list[Any], list[Any]]] = {}
        for name, qtype in questions:
            q = DNSRecord.question(name, qtype)
            q.add_ar(EDNS0(udp_len=4096))
            wire = zone.answer(bytes(q.pack()), 512)
            assert wire is not None
            r = DNSRecord.parse(wire)
            extra = [rr for rr in r.ar if rr.rtype != QTYPE.OPT]
            self.table[(q.q.qname, q.q.qtype)] = (r.header.rcode, r.rr, r.auth, extra)
        self.max_payload = zone.max_udp_payload

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply(ra=0, aa=1)
        found = self.table.get((request.q.qname, request.q.qtype))
        if found is None:
            reply.header.rcode = 5
            return reply
        reply.header.rcode, reply.rr, reply.auth, extra = (
            found[0],
            list(found[1]),
            list(found[2]),
            list(found[3]),
        )
        if any(rr.rtype == QTYPE.OPT for rr in request.ar):
            extra.append(EDNS0(udp_len=self.max_payload))
        reply.ar = extra
        return reply


# --- load -----------------------------------------------------------------------------------


def dnsperf_version() -> str | None:
    exe = shutil.which("dnsperf")
    if exe is None:
        return None
    out = subprocess.run([exe, "-h"], capture_output=True, text=True).stdout
    m = re.search(r"Version (\S+)", out)
    return f"dnsperf {m.group(1)}" if m else "dnsperf"


async def run_dnsperf(
    port: int, qfile: Path, duration: float, clients: int, outstanding: int
) -> dict[str, Any]:
    """One dnsperf trial: qps, lost %, per-response latencies (s), mean response size (bytes)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = await asyncio.create_subprocess_exec(
            "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-l", str(duration),
            "-c", str(clients), "-q", str(outstanding), "-t", "1", "-e", "-v",
            stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        await proc.wait()
        out.seek(0)
        latencies: list[float] = []
        qps = lost = size = float("nan")
        for line in out:
            if line.startswith("> "):
                latencies.append(float(line.rsplit(None, 1)[1]))
            elif "Queries per second:" in line:
                qps = float(line.split(":")[1])
            elif "Queries lost:" in line:
                lost = float(line.split("(")[1].split("%")[0])
            elif "Average packet size:" in line:
                size = float(line.rsplit(None, 1)[1])
    return {"qps": qps, "lost": lost, "latencies": latencies, "response_bytes": size}


async def run_builtin(
    port: int, qfile: Path, duration: float, clients: int, outstanding: int
) -> dict[str, Any]:
    """One trial with the built-in generator, in a child process so it does not share our GIL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.dns_throughput", "--loadgen", str(port), str(qfile), str(duration),
        str(clients), str(outstanding), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    result: dict[str, Any] = json.loads(out)
    return result


def _loadgen(port: int, qfile: Path, duration: float, clients: int, outstanding: int) -> None:
    """The fallback load generator's process: prints {"qps", "lost", "latencies"} as JSON."""
    wires = []
    for line in qfile.read_text().splitlines():
        name, qtype = line.split()
        q = DNSRecord.question(name, qtype)
        q.add_ar(EDNS0(udp_len=4096))
        wires.append(bytes(q.pack())[2:])

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        latencies: list[float] = []
        sent = lost = sizes = 0
        per_client = max(1, outstanding // clients)
        end = loop.time() + duration

        class Client(asyncio.DatagramProtocol):
            def __init__(self) -> None:
                self.pending: dict[int, float] = {}
                self.next_id = 0
                self.transport: asyncio.DatagramTransport | None = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport  # type: ignore[assignment]
                for _ in range(per_client):
                    self.send()

            def send(self) -> None:
                nonlocal sent
                if self.transport is None or loop.time() >= end:
                    return
                self.next_id = (self.next_id + 1) & 0xFFFF
                self.pending[self.next_id] = loop.time()
                self.transport.sendto(self.next_id.to_bytes(2, "big") + wires[sent % len(wires)])
                sent += 1

            def datagram_received(self, data: bytes, addr: Any) -> None:
                nonlocal sizes
                t0 = self.pending.pop(int.from_bytes(data[:2], "big"), None)
                if t0 is not None:
                    latencies.append(loop.time() - t0)
                    sizes += len(data)
                    self.send()

            def expire(self) -> None:
                nonlocal lost
                now = loop.time()
                for qid, t0 in list(self.pending.items()):
                    if now - t0 > 1.0:
                        del self.pending[qid]
                        lost += 1
                        self.send()

        clients_ = []
        start = loop.time()
        for _ in range(clients):
            _, proto = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
            clients_.append(proto)
        while loop.time() < end:
            await asyncio.sleep(0.2)
            for c in clients_:
                c.expire()
        elapsed = loop.time() - start
        await asyncio.sleep(0.2)  # late replies still count as answered, not their rate
        for c in clients_:
            if c.transport is not None:
                c.transport.close()
        return {
            "qps": len(latencies) / elapsed,
            "lost": 100 * lost / max(sent, 1),
            "latencies": latencies,
            "response_bytes": sizes / max(len(latencies), 1),
        }

    print(json.dumps(asyncio.run(main())))


# --- the benchmark --------------------------------------------------------------------------


class _StockServer:
    """dnslib.server.DNSServer on an ephemeral loopback port, in background threads."""

    def __init__(self, resolver: BaseResolver) -> None:
        self.server = DNSServer(resolver, address="127.0.0.1", port=0, logger=_SilentLogger())
        self.port = self.server.server.server_address[1]
        self.thread = threading.Thread(target=self.server.server.serve_forever, daemon=True)

    def __enter__(self) -> _StockServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.server.shutdown()
        self.server.server.server_close()


async def bench(
    *,
    trials: int = 5,
    duration: float = 3.0,
    services: int = 100,
    clients: int = 4,
    outstanding: int = 100,
    tool: str = "auto",
) -> dict[str, Any]:
    """Run every (server, workload) pair; return the figures and print a markdown table."""
    version = dnsperf_version()
    if tool == "auto":
        tool = "dnsperf" if version else "builtin"
    if tool == "dnsperf" and version is None:
        raise SystemExit("dnsperf is not installed (apt-get install dnsperf), use --tool builtin")
    run = run_dnsperf if tool == "dnsperf" else run_builtin
    tool_name = version if tool == "dnsperf" else "built-in asyncio load generator (bench/dns_throughput.py)"

    svc = make_services(services)
    zone = DnsSdZone(DOMAIN, svc)
    loads = workloads(svc)
    results: dict[str, Any] = {
        "tool": tool_name,
        "trials": trials,
        "duration_s": duration,
        "services": services,
        "clients": clients,
        "outstanding": outstanding,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, queries in loads.items():
            files[name] = Path(tmp, f"{name}.txt")
            files[name].write_text("".join(f"{n} {t}\n" for n, t in queries))
        resolver = MemoryResolver(zone, sorted({q for qs in loads.values() for q in qs}))

        async def measure(server: str, port: int) -> None:
            for load, qfile in files.items():
                await run(port, qfile, min(1.0, duration), clients, outstanding)  # warm-up: caches, threads
                trial = [await run(port, qfile, duration, clients, outstanding) for _ in range(trials)]
                qps = [t["qps"] for t in trial]
                lat = [x for t in trial for x in t["latencies"]]
                results["runs"][f"{server}/{load}"] = {
                    "server": server,
                    "workload": load,
                    "qps": qps,
                    "qps_median": statistics.median(qps),
                    "qps_p5": pct(qps, 5),
                    "qps_p95": pct(qps, 95),
                    "lost_pct_max": max(t["lost"] for t in trial),
                    "response_bytes": statistics.mean(t["response_bytes"] for t in trial),
                    "latency_ms": {f"p{p}": pct(lat, p) * 1e3 for p in (50, 95, 99)},
                }

        # The cache-less run shows the worst case: every query parsed and encoded by dnslib,
        # as right after zone.update() or under a flood of distinct names.
        for label, served in (("", zone), (", no cache", DnsSdZone(DOMAIN, svc, cache_size=0))):
            dns = DnsSdServer(served, "127.0.0.1", 0)
            await dns.start()
            try:
                await measure(f"z2z DnsSdServer (asyncio{label})", dns.port)
            finally:
                await dns.close()
        await asyncio.sleep(0.2)
        with _StockServer(resolver) as stock:
            await measure("dnslib DNSServer (threads)", stock.port)
    print(markdown(results))
    return results


def markdown(results: dict[str, Any]) -> str:
    """The results as a markdown table, with the conditions on top."""
    lines = [
        f"{results['tool']}; {results['trials']} trials × {results['duration_s']} s; "
        f"{results['services']} services; {results['clients']} clients, "
        f"{results['outstanding']} outstanding; "
        f"{results['cpus']} CPUs; Python {results['python']}",
        "",
        "| server | workload | qps median | qps p5 | qps p95 | latency p50 ms | p95 ms | p99 ms "
        "| lost % (max) | response bytes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"].values():
        lat = r["latency_ms"]
        lines.append(
            f"| {r['server']} | {r['workload']} | {r['qps_median']:,.0f} | {r['qps_p5']:,.0f} | "
            f"{r['qps_p95']:,.0f} | {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['p99']:.2f} | "
            f"{r['lost_pct_max']:.2f} | {r['response_bytes']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--loadgen"]:
        port, qfile, duration, clients, outstanding = argv[1:6]
        _loadgen(int(port), Path(qfile), float(duration), int(clients), int(outstanding))
        return
    p = argparse.ArgumentParser(prog="python -m bench.dns_throughput", description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per trial")
    p.add_argument("--services", type=int, default=100)
    p.add_argument("--clients", type=int, default=4, help="client sockets of the load tool")
    p.add_argument("--outstanding", type=int, default=100, help="queries in flight")
    p.add_argument("--tool", choices=["auto", "dnsperf", "builtin"], default="auto")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    started = time.monotonic()
    results = asyncio.run(
        bench(
            trials=a.trials,
            duration=a.duration,
            services=a.services,
            clients=a.clients,
            outstanding=a.outstanding,
            tool=a.tool,
        )
    )
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    print(f"\n(took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
