"""The relay at run time: which imports go through it, the listeners, the endpoint, the records.

`Relay` sits beside `Bridging` (z2z.app.bridging), which asks it, for every
import it is about to publish, what the link must show (`route`): the
exporting site's own addresses, a proxy on this gateway's link address and a
port it listens on, or nothing (`z2z.core.relay.decide`).  It also:

- serves this site's relay endpoint (`RelayServer`): streams from other
  members, each only to a service this gateway exports now;
- puts this site's `RelayRecord` (endpoint, reachable) into the DHT while
  bridging, and reads the other sites' records, sealed and signed like every
  value;
- pings the endpoints its relayed imports use: a relayed proxy is withdrawn
  while its site's relay cannot be reached, and comes back when it answers.

Only in a private network: the channel is authenticated with certificates
derived from the network secret (z2z.adapters.relay.pki).  A public network
has no membership to check, so `build` returns None there and imports stay
direct, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.serialization import Encoding

from z2z.adapters.dns.addr import parse_listen
from z2z.adapters.dns.prefixes import interface_prefixes
from z2z.adapters.link.net import contact_address
from z2z.adapters.relay import RelayConnector, RelayServer, StreamLimits, tls_contexts
from z2z.adapters.relay.pki import network_ca, site_certificate
from z2z.adapters.rendezvous.base import RendezvousError
from z2z.app import keys as key_store
from z2z.core.bridge import Put
from z2z.core.records import Service
from z2z.core.relay import (
    RELAY_RECORD_TYPE,
    Decision,
    RelayError,
    RelayRecord,
    StreamRequest,
    decide,
    decode_record,
    encode_record,
    exported_target,
)
from z2z.core.security import SecurityError

if TYPE_CHECKING:
    from z2z.app.bridging import Bridging
    from z2z.app.config import GatewayConfig

log = logging.getLogger(__name__)

CERT_FILE = "relay-cert.pem"
PROBE_TIMEOUT = 1.5  # seconds for one TCP probe of a service's address
PROBE_CACHE = 300.0  # seconds a probe result is kept
PROBES_AT_ONCE = 32  # TCP probes in flight at most (a burst of imports is not a SYN flood)
RECORDS_EVERY = 5.0  # seconds between reads of the relay records (and re-puts when due)
HEALTH_EVERY = 5.0  # seconds between pings of the endpoints relayed imports use
DOWN_AFTER = 2  # failed pings in a row before a site's relayed proxies are withdrawn


@dataclass
class RelayedImport:
    """One import Bridging asked about: what it is, what the link shows for it, and why."""

    site: str
    service: Service  # as the bridge publishes it (renamed), with the site's addresses
    origin: Service  # as the exporting site put it into the DHT
    decision: Decision = field(default_factory=lambda: Decision("direct"))
    shown: Service | None = None  # what the link shows now
    server: asyncio.Server | None = None
    port: int = 0


class Relay:
    """Relaying for one gateway of a private network (see the module doc)."""

    def __init__(
        self,
        config: GatewayConfig,
        bridging: Bridging,
        server_context: Any,
        client_context: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.bridging = bridging
        self.site = config.site
        self.clock = clock
        self.limits = StreamLimits(per_site=config.relay_max_streams, idle=config.relay_idle)
        self.link_address = contact_address(config.interface)
        host, port = parse_listen(config.relay_listen)
        self.listen_host, self.listen_port = host, port
        self.endpoint = config.relay_advertise or self._endpoint(self.link_address, port)
        self.server = RelayServer(
            server_context,
            host or None,
            port,
            site=self.site,
            authorize=self._authorize,
            target=self._target,
            limits=self.limits,
            refused=self._refused,
        )
        self.connector = RelayConnector(client_context, authorize=self._authorize, limits=self.limits)
        self.records: dict[str, RelayRecord] = {}
        self.imports: dict[tuple[str, str], RelayedImport] = {}
        self.probes: dict[tuple[str, int], tuple[bool, float]] = {}
        self._probing = asyncio.Semaphore(PROBES_AT_ONCE)
        self.failed_pings: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self._logged: set[str] = set()
        self._last_put = float("-inf")
        self._jobs: list[asyncio.Task[None]] = []
        self._prefixes = [ipaddress.ip_network(p) for p in interface_prefixes(())]
        self.records_every, self.health_every = RECORDS_EVERY, HEALTH_EVERY
        self.changed: Callable[[], None] = lambda: None  # what the link shows changed (the DNS zone follows)

    @staticmethod
    def _endpoint(host: str, port: int) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- building --------------------------------------------------------------

    @classmethod
    def build(cls, config: GatewayConfig, bridging: Bridging) -> Relay | None:
        """The relay this configuration asks for, or None (relay never, or a public network)."""
        if config.relay == "never":
            log.info("relay off (relay = never): imports carry the exporting sites' addresses")
            return None
        codec = bridging.codec
        seed = codec.relay_ca_seed()
        if seed is None or codec.signing_key is None:
            log.info(
                "relay off: a public network has no membership to authenticate relay peers with "
                "(docs/relay.md); imports carry the exporting sites' addresses"
            )
            return None
        ca_key, ca_cert = network_ca(seed, config.network)
        cert = site_certificate(ca_key, ca_cert, config.site, codec.signing_key, time.time())
        chain = cert.public_bytes(Encoding.PEM) + ca_cert.public_bytes(Encoding.PEM)
        cert_file = os.path.join(config.state_dir, CERT_FILE)
        key_store.write_private(cert_file, chain, force=True)
        key_file = str(key_store.site_key_path(config.state_dir, config.site_key))
        server_ctx, client_ctx = tls_contexts(
            ca_cert.public_bytes(Encoding.PEM).decode(), cert_file, key_file
        )
        return cls(config, bridging, server_ctx, client_ctx)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Serve the endpoint and start the record and health jobs; a busy port is logged, not fatal."""
        try:
            port = await self.server.start()
            if not self.config.relay_advertise:  # the port really bound (relay-listen port 0)
                self.endpoint = self._endpoint(self.link_address, port)
            log.info(
                "relay endpoint listening on %s port %d, advertised as %s",
                self.listen_host,
                port,
                self.endpoint,
            )
        except OSError as exc:
            log.error(
                "relay: cannot listen on %s: %s; other sites cannot relay to this one",
                self.config.relay_listen,
                exc.strerror or exc,
            )
            self.endpoint = ""
        self._jobs = [
            asyncio.ensure_future(self._every("records_every", self.records_round)),
            asyncio.ensure_future(self._every("health_every", self.health_round)),
        ]

    async def close(self) -> None:
        for job in self._jobs:
            job.cancel()
        for job in self._jobs:
            with contextlib.suppress(BaseException):
                await job
        for entry in self.imports.values():
            self._stop_listener(entry)
        await self.connector.close()
        await self.server.close()

    async def _every(self, interval: str, work: Callable[[], Any]) -> None:
        """Run `work` now and then every `getattr(self, interval)` seconds (tests shorten them)."""
        while True:
            try:
                await work()
            except Exception:
                log.exception("relay: %s failed", getattr(work, "__name__", "a job"))
            await asyncio.sleep(getattr(self, interval))

    # -- what the link shows for an import (called by Bridging in its link op) --

    async def route(self, site: str, service: Service) -> Service | None:
        """What to publish for `service` from `site`: itself, a relayed proxy, or None (hold)."""
        key = service.key
        origin = self.bridging.bridge.import_origin(site, service.type, service.instance) or service
        entry = self.imports.get(key)
        if entry is None:
            entry = self.imports[key] = RelayedImport(site, service, origin)
        entry.site, entry.service, entry.origin = site, service, origin
        decision = self._decide(entry)
        if decision.route == "probe":
            await self._probe(origin)
            decision = self._decide(entry)
        return await self._apply(entry, decision)

    async def _apply(self, entry: RelayedImport, decision: Decision) -> Service | None:
        before = entry.decision
        entry.decision = decision
        self.changed()
        if decision != before and decision.route != "direct":
            log.info(
                "import %r from %s: %s (%s)",
                entry.service.instance,
                entry.site,
                decision.route,
                decision.reason,
            )
        if decision.route == "relay":
            if entry.server is None and not await self._start_listener(entry):
                entry.decision = Decision("hold", "cannot listen for the relayed proxy")
                entry.shown = None
                return None
            entry.shown = replace(entry.service, addresses=(self.link_address,), port=entry.port)
            return entry.shown
        self._stop_listener(entry)
        entry.shown = entry.service if decision.route == "direct" else None
        return entry.shown

    def as_shown(self, services: list[Service]) -> list[Service]:
        """`services` with each import replaced by what the link shows for it (held ones left out)."""
        out = []
        for svc in services:
            entry = self.imports.get(svc.key)
            if entry is None:
                out.append(svc)
            elif entry.shown is not None:
                out.append(entry.shown)
        return out

    def shown(self, key: tuple[str, str]) -> Service | None:
        """What the link shows now for the import `key` (None: nothing, or not asked yet)."""
        entry = self.imports.get(key)
        return entry.shown if entry is not None else None

    def forget(self, service_type: str, instance: str) -> None:
        """The bridge withdrew this import: close its listener, forget it."""
        entry = self.imports.pop((service_type, instance), None)
        if entry is not None:
            self._stop_listener(entry)

    def _decide(self, entry: RelayedImport) -> Decision:
        now = self.clock()
        record = self.records.get(entry.site)
        if record is not None and record.expires() + self.config.max_skew < now:
            record = None
        path = bool(record and record.endpoint) and self.failed_pings[entry.site] < DOWN_AFTER
        origin = entry.origin
        return decide(
            self.config.relay,
            origin.type,
            origin.addresses,
            local_prefixes=self._prefixes,
            site_reachable=record.reachable if record is not None else None,
            probe=self._probe_result(origin),
            relay_path=path,
        )

    def _probe_result(self, service: Service) -> bool | None:
        results = []
        now = time.monotonic()
        for a in service.addresses:
            hit = self.probes.get((a, service.port))
            if hit is not None and now - hit[1] < PROBE_CACHE:
                results.append(hit[0])
        if not results:
            return None
        return any(results)

    async def _probe(self, service: Service) -> None:
        """TCP connect to each address of `service` (short timeout); the results are cached.

        The question is whether this network routes to the address: a refused
        connection (the host answered with a reset) counts as reachable; a
        timeout or an unreachable network or host does not.
        """
        now = time.monotonic()
        for stale in [k for k, (_, at) in self.probes.items() if now - at >= PROBE_CACHE]:
            del self.probes[stale]  # expired results are never read again: keep the cache bounded
        if not getattr(self.bridging.link, "real_network", True):  # an in-memory link (unit tests)
            for a in service.addresses:
                self.probes[(a, service.port)] = (True, time.monotonic())
            return
        for a in service.addresses:
            if (a, service.port) in self.probes:  # probed meanwhile (another import of the host)
                continue
            try:
                async with self._probing:
                    connect = asyncio.open_connection(a, service.port)
                    _, writer = await asyncio.wait_for(connect, PROBE_TIMEOUT)
                writer.close()
                ok = True
            except ConnectionRefusedError:
                ok = True
            except (OSError, TimeoutError):
                ok = False
            self.probes[(a, service.port)] = (ok, time.monotonic())
            log.debug("relay probe %s port %d: %s", a, service.port, "reachable" if ok else "unreachable")

    async def _start_listener(self, entry: RelayedImport) -> bool:
        key = entry.service.key

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            current = self.imports.get(key)
            record = self.records.get(current.site) if current is not None else None
            if current is None or record is None or not record.endpoint:
                writer.close()
                return
            o = current.origin
            req = StreamRequest("connect", current.site, o.type, o.instance, o.port)
            await self.connector.carry((reader, writer), record.endpoint, req)

        try:
            entry.server = await asyncio.start_server(client, self.link_address, 0)
        except OSError as exc:
            log.error("relay: cannot listen on %s for %r: %s", self.link_address, entry.service.instance, exc)
            return False
        entry.port = int(entry.server.sockets[0].getsockname()[1])
        return True

    @staticmethod
    def _stop_listener(entry: RelayedImport) -> None:
        if entry.server is not None:
            entry.server.close()
            entry.server = None
            entry.port = 0

    def reconcile(self) -> None:
        """Re-decide every import (records, pings or probes changed); re-publish what changed."""
        for key, entry in list(self.imports.items()):
            decision = self._decide(entry)
            if decision == entry.decision:
                continue
            self.bridging.submit_link_op(key, self._republish(key, decision))

    def _republish(self, key: tuple[str, str], decision: Decision) -> Callable[[], Any]:
        """Show what `decision` says for import `key`; "probe" (a relay path appeared) probes first."""

        async def work() -> None:
            entry = self.imports.get(key)
            if entry is None:
                return
            decided = decision
            if decided.route == "probe":
                await self._probe(entry.origin)
                decided = self._decide(entry)
                if decided.route == "probe":  # the path went away meanwhile, or the probe expired
                    return
            was = entry.shown
            shown = await self._apply(entry, decided)
            if shown is None and was is not None:
                await self.bridging.link.withdraw(was.type, was.instance)
            elif shown is not None and shown != was:
                await self.bridging.link.publish(shown)

        return work

    # -- the exporting side ----------------------------------------------------

    def _authorize(self, site: str, key: bytes) -> str | None:
        return self.bridging.trust_site(site, key)

    def _target(self, req: StreamRequest, peer: str) -> Service | str:
        return exported_target(req, self.site, self.bridging.bridge.exports())

    def _refused(self, reason: str, detail: str) -> None:
        self.refusals[reason] += 1
        self.bridging.count_reject(f"relay-{reason}")
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("relay: refused a stream (%s): %s; further ones are only counted", reason, detail)
        else:
            log.debug("relay: refused (%s): %s", reason, detail)

    # -- records ---------------------------------------------------------------

    async def records_round(self) -> None:
        """Put this site's record when due (while bridging); read every site's record."""
        bridging = self.bridging
        now = self.clock()
        key = bridging.bridge.key_for(RELAY_RECORD_TYPE)
        if bridging.bridge.active and now - self._last_put >= self.config.refresh:
            body = encode_record(
                RelayRecord(
                    self.config.network, self.site, now, self.config.ttl, self.endpoint, self.config.reachable
                )
            )
            try:
                data = bridging.codec.seal(body, key)
            except (ValueError, SecurityError) as exc:
                log.debug("cannot seal the relay record: %s", exc)
            else:
                value_id = bridging.codec.value_id(
                    self.site, RELAY_RECORD_TYPE, "", bridging.bridge.next_seq(now)
                )
                bridging.puts.submit(Put(key, value_id, data, RELAY_RECORD_TYPE, "", "relay"))
                self._last_put = now
        try:
            values = await bridging.store.get(key)
        except RendezvousError as exc:
            log.debug("relay records: %s", exc)
            return
        changed = False
        for value in values:
            record = self._open_record(value.data, key, now)
            if record is None:
                continue
            old = self.records.get(record.site)
            if old is None or record.ts > old.ts:
                self.records[record.site] = record
                if old is None or (old.endpoint, old.reachable) != (record.endpoint, record.reachable):
                    log.info(
                        "site %s: relay endpoint %s, addresses %sreachable from other sites",
                        record.site,
                        record.endpoint or "none",
                        "" if record.reachable else "NOT ",
                    )
                    changed = True
        if changed:
            self.reconcile()

    def _open_record(self, data: bytes, key: bytes, now: float) -> RelayRecord | None:
        codec = self.bridging.codec
        try:
            opened = codec.open(data, key)
            if not codec.verify(opened):
                raise RelayError("bad signature")
            record = decode_record(opened.body)
            if record.site == self.site or record.network != self.config.network:
                return None
            refused = self.bridging.trust_site(record.site, opened.signer)
            if refused is not None:
                raise RelayError(refused)
        except (RelayError, SecurityError, ValueError) as exc:
            self.bridging.count_reject("bad-relay-record")
            log.debug("ignoring a relay record: %s", exc)
            return None
        skew = self.config.max_skew
        if record.ts > now + skew or record.expires() + skew < now:
            return None
        return record

    # -- health ------------------------------------------------------------------

    async def health_round(self) -> None:
        """Ping the relay of every site some import is relayed (or held) for."""
        sites = {e.site for e in self.imports.values() if e.decision.route in ("relay", "hold")}
        changed = False
        for site in sorted(sites):
            record = self.records.get(site)
            if record is None or not record.endpoint:
                continue
            ok = await self.connector.ping(record.endpoint, site)
            before = self.failed_pings[site] >= DOWN_AFTER
            if ok:
                self.failed_pings.pop(site, None)
                if any(e.site == site and e.decision.route == "relay" for e in self.imports.values()):
                    self.connector.warm(record.endpoint, site)  # handshaken channels ready for clients
            else:
                self.failed_pings[site] += 1
            after = self.failed_pings[site] >= DOWN_AFTER
            if before != after:
                log.warning(
                    "relay of site %s at %s is %s",
                    site,
                    record.endpoint,
                    "DOWN: withdrawing its relayed imports" if after else "back",
                )
                changed = True
        if changed:
            self.reconcile()

    # -- status --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.config.relay,
            "endpoint": self.endpoint,
            "reachable": self.config.reachable,
            "imports": [
                {
                    "site": e.site,
                    "type": e.service.type,
                    "instance": e.service.instance,
                    "route": e.decision.route,
                    "reason": e.decision.reason,
                    "port": e.port,
                }
                for e in self.imports.values()
            ],
            "sites": {
                s: {"endpoint": r.endpoint, "reachable": r.reachable} for s, r in sorted(self.records.items())
            },
            "streams": sum(self.server.streams.values()) + sum(self.connector.streams.values()),
            "bytes": self.server.carried + self.connector.carried,
            "refused": dict(self.refusals),
            # warm channels (z2z.core.relay.pool): ready now; streams that found one or handshook
            "pool": {
                "ready": self.connector.spares(),
                "warm": self.connector.warm_streams,
                "cold": self.connector.cold_streams,
            },
        }
