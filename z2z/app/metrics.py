"""Prometheus metrics of one gateway (prometheus-client), read at scrape time.

Most metrics are not kept twice: a collector reads the gateway's status snapshot
(`z2z.app.status.GatewayStatus`) when Prometheus scrapes, so a metric can never
disagree with `z2z status`.  Only rendezvous latencies are recorded
as they happen, in a histogram.  Scrapes are served on the gateway's event loop
(`z2z.app.web`), so the collector never races the code that changes that state.

    z2z_services{direction,site,type}            services exported / imported now
    z2z_rejected_records_total{reason}           records refused, by reason
    z2z_filtered_records{rule}                   distinct records a filter rule stopped
    z2z_rendezvous_operation_seconds{op,store}   put/get latency (histogram)
    z2z_stage, z2z_leader, z2z_island_size       the stage machine (docs/stages.md)
    z2z_dht_peers, z2z_leaders_known             the leaders' DHT and registry
    z2z_rendezvous_up, z2z_puts_total, z2z_info{site,network,node,version}
    z2z_flapping_services, z2z_flap_holds_total  flap damping (local services held)
    z2z_rendezvous_failures_total{condition}     failed proxy operations, by condition
    z2z_site_over_quota{site,reason}             1 per site over a quota (its records refused)
    z2z_quota_refused_records{site,reason}       records refused since that site went over
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from z2z import __version__
from z2z.app.status import GatewayStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _GatewayCollector(Collector):
    def __init__(self, status: Callable[[], GatewayStatus]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        snapshot = self.status()
        doc = snapshot.as_json()
        info = GaugeMetricFamily("z2z_info", "This gateway", labels=["site", "network", "node", "version"])
        info.add_metric([doc["site"], doc["network"], doc["node"], __version__], 1)
        yield info

        services = GaugeMetricFamily(
            "z2z_services",
            "Services bridged now, by direction, origin site and type",
            labels=["direction", "site", "type"],
        )
        counts = Counter((s["direction"], s["site"], s["type"]) for s in doc["services"])
        for (direction, site, service_type), n in sorted(counts.items()):
            services.add_metric([direction, site, service_type], n)
        yield services

        yield CounterMetricFamily(
            "z2z_link_kernel_drops",
            "mDNS datagrams the kernel dropped on the link's sockets (receive buffer full)",
            value=doc["link_kernel_drops"],
        )

        rejected = CounterMetricFamily(
            "z2z_rejected_records", "Records refused, by reason", labels=["reason"]
        )
        for reason, n in sorted(doc["rejected"].items()):
            rejected.add_metric([reason], n)
        yield rejected

        over = GaugeMetricFamily(
            "z2z_site_over_quota",
            "1 for each site over a quota (its further records are refused), by the quota",
            labels=["site", "reason"],
        )
        refused = GaugeMetricFamily(
            "z2z_quota_refused_records",
            "Records of a site over quota refused since it went over",
            labels=["site", "reason"],
        )
        for site, entry in sorted(doc["over_quota"].items()):
            over.add_metric([site, entry["reason"]], 1)
            refused.add_metric([site, entry["reason"]], entry["refused"])
        yield over
        yield refused

        filtered = GaugeMetricFamily(
            "z2z_filtered_records", "Distinct records a filter rule stopped", labels=["rule"]
        )
        for rule, n in sorted(doc["filtered"].items()):
            filtered.add_metric([rule], n)
        yield filtered

        st = doc.get("stages") or {}
        yield GaugeMetricFamily(
            "z2z_stage",
            "Stage of this gateway (1 island, 2 interconnected, 3 leaders' DHT; 0 without election)",
            value=st.get("stage") or 0,
        )
        yield GaugeMetricFamily(
            "z2z_leader", "1 while this gateway bridges for its island", value=1 if doc["bridging"] else 0
        )
        yield GaugeMetricFamily(
            "z2z_island_size",
            "Gateways of this network on this link, this one included",
            value=1 + len(st.get("island") or []),
        )
        yield GaugeMetricFamily(
            "z2z_dht_peers", "Peers of the leaders' embedded DHT node", value=st.get("dht_peers") or 0
        )
        yield GaugeMetricFamily(
            "z2z_leaders_known", "Other live island leaders known", value=len(doc.get("leaders") or [])
        )
        yield GaugeMetricFamily(
            "z2z_rendezvous_up", "1 while the rendezvous answers", value=1 if doc["rendezvous_ok"] else 0
        )
        yield CounterMetricFamily(
            "z2z_puts",
            "Values put into the DHT (new, changed, refresh, tombstones)",
            value=snapshot.puts,
        )
        failures = CounterMetricFamily(
            "z2z_rendezvous_failures",
            "Failed rendezvous (proxy) operations, by condition",
            labels=["condition"],
        )
        for condition, n in sorted(doc["rendezvous_failures"].items()):
            failures.add_metric([condition], n)
        yield failures
        yield GaugeMetricFamily(
            "z2z_flapping_services",
            "Local services held now by flap damping",
            value=len(doc.get("flapping") or []),
        )
        yield CounterMetricFamily(
            "z2z_flap_holds", "Holds started by flap damping", value=snapshot.flap_holds
        )
        relay = doc.get("relay") or {}
        routes = GaugeMetricFamily(
            "z2z_relay_imports",
            "Imports by route (direct, relay, hold) and reason (overlap, unreachable, site-behind-nat...)",
            labels=["route", "reason"],
        )
        for (route, reason), n in sorted(
            Counter((i["route"], i["reason"]) for i in relay.get("imports", [])).items()
        ):
            routes.add_metric([route, reason], n)
        yield routes
        yield GaugeMetricFamily(
            "z2z_relay_streams", "Relayed streams open now", value=relay.get("streams", 0)
        )
        yield CounterMetricFamily(
            "z2z_relay_bytes", "Bytes carried by the relay, both ways", value=relay.get("bytes", 0)
        )


class Metrics:
    """The registry of one gateway, and the latency histogram the runtime feeds."""

    def __init__(self, status: Callable[[], GatewayStatus]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "z2z_rendezvous_operation_seconds",
            "Latency of rendezvous operations (put, get), by store (rendezvous or the leaders' dht)",
            ["op", "store"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_GatewayCollector(status))

    def observe(self, op: str, store: str, seconds: float) -> None:
        self.latency.labels(op, store).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
