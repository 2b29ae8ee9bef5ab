"""Unit tests of the pure export/import core: two bridges wired by hand."""

from __future__ import annotations

from dataclasses import replace

from z2z.core.bridge import PROXY_MARK, Bridge, BridgeSettings, Publish, Put, Reject, Withdraw
from z2z.core.records import Service
from z2z.core.wire import envelope as protocol

T = "_ipp._tcp"
PRINTER = Service(T, "Printer", "printer", 631, (b"rp=ipp/print", b"color"), ("10.1.0.9", "fe80::9"))
NOW = 1_800_000_000.0


def bridge(site: str, **kw: object) -> Bridge:
    return Bridge(BridgeSettings(site=site, network="z2z", node="00" * 8, types=(T,), **kw))  # type: ignore[arg-type]


def puts(actions: list) -> list[Put]:
    return [a for a in actions if isinstance(a, Put)]


def deliver(actions: list, to: Bridge, now: float = NOW) -> list:
    out: list = []
    for p in puts(actions):
        out += to.remote_value(p.service_type, p.data, now)
    return out


def test_export_then_import_renames_host_and_keeps_records() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    acts = a.local_up(PRINTER, NOW)
    [put] = puts(acts)
    assert put.key == protocol.type_key("z2z", T)
    [pub] = deliver(acts, b)
    assert isinstance(pub, Publish) and pub.site == "campus-a"
    svc = pub.service
    assert (svc.instance, svc.port, svc.txt) == ("Printer", 631, PRINTER.txt)
    assert svc.addresses == ("10.1.0.9",)  # link-local dropped on export
    assert svc.host == "printer-campus-a" + PROXY_MARK


def test_goodbye_sends_tombstone_that_withdraws() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    deliver(a.local_up(PRINTER, NOW), b)
    acts = a.local_down(T, "Printer", NOW + 1)
    [tomb] = puts(acts)
    assert tomb.gone
    assert deliver(acts, b, NOW + 1) == [Withdraw(T, "Printer", "campus-a")]
    assert b.imports() == []


def test_never_imports_own_site_nor_reexports_proxies() -> None:
    a1, a2, b = bridge("campus-a"), bridge("campus-a"), bridge("campus-b")
    assert deliver(a1.local_up(PRINTER, NOW), a2) == []  # same site, other gateway
    [pub] = deliver(a1.local_up(replace(PRINTER, port=632), NOW + 1), b)
    # campus-b's own link now shows the proxy; b (and any peer gateway) must not export it
    assert b.local_up(pub.service, NOW + 2) == []
    assert bridge("campus-b").local_up(pub.service, NOW + 2) == []


def test_unchanged_service_is_not_reput_but_change_is() -> None:
    a = bridge("campus-a")
    first = puts(a.local_up(PRINTER, NOW))
    assert puts(a.local_up(PRINTER, NOW + 1)) == []
    [again] = puts(a.local_up(replace(PRINTER, txt=(b"rp=x",)), NOW + 2))
    assert again.value_id != first[0].value_id  # a new version is a new DHT value


def test_refresh_and_ttl_expiry_without_tombstone() -> None:
    a, b = bridge("campus-a", ttl=60, refresh=20.0, max_skew=5.0), bridge("campus-b", max_skew=5.0)
    deliver(a.local_up(PRINTER, NOW), b)
    assert puts(a.tick(NOW + 10)) == []
    refresh = a.tick(NOW + 20)
    assert len(puts(refresh)) == 1
    assert deliver(refresh, b, NOW + 20) == []  # same records: no re-publish on the link
    assert b.tick(NOW + 60) == []  # the refresh extended it
    # origin crashes: no more refreshes; gone after ttl + skew
    assert b.tick(NOW + 20 + 60 + 6) == [Withdraw(T, "Printer", "campus-a")]


def test_replayed_old_version_cannot_resurrect_a_removed_service() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    up = a.local_up(PRINTER, NOW)
    deliver(up, b)
    deliver(a.local_down(T, "Printer", NOW + 1), b, NOW + 1)
    assert deliver(up, b, NOW + 2) == []  # anti-entropy returns the old value again
    assert b.imports() == []
    assert b.stats.rejected["old-seq"] == 1


def test_stale_and_future_values_ignored() -> None:
    a, b = bridge("campus-a", ttl=60), bridge("campus-b", max_skew=5.0)
    acts = a.local_up(PRINTER, NOW)
    assert deliver(acts, b, NOW + 100) == []
    assert b.stats.rejected["stale"] == 1
    [rej] = deliver(acts, b, NOW - 100)
    assert isinstance(rej, Reject) and rej.reason == "from-future"


def test_instance_collisions_get_site_suffix() -> None:
    a, c, b = bridge("campus-a"), bridge("campus-c"), bridge("campus-b")
    b.local_up(replace(PRINTER, host="localprinter", addresses=("10.2.0.5",)), NOW)
    [pub_a] = [x for x in deliver(a.local_up(PRINTER, NOW), b) if isinstance(x, Publish)]
    [pub_c] = [x for x in deliver(c.local_up(PRINTER, NOW), b) if isinstance(x, Publish)]
    assert pub_a.service.instance == "Printer (campus-a)"
    assert pub_c.service.instance == "Printer (campus-c)"
    assert pub_a.service.host != pub_c.service.host


def test_local_service_arriving_late_pushes_import_aside() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    assert len(deliver(a.local_up(PRINTER, NOW), b)) == 1
    acts = b.local_up(replace(PRINTER, host="mine", addresses=("10.2.0.5",)), NOW + 1)
    assert Withdraw(T, "Printer", "campus-a") in acts
    [moved] = [x for x in acts if isinstance(x, Publish)]
    assert moved.service.instance == "Printer (campus-a)"


def test_garbage_and_foreign_values_are_counted_not_fatal() -> None:
    b = bridge("campus-b")
    other_net = Bridge(BridgeSettings("campus-x", "other", "11" * 8, (T,)))
    [rej] = deliver(other_net.local_up(PRINTER, NOW), b)
    assert isinstance(rej, Reject) and rej.reason == "other-network"
    assert b.remote_value(T, b"\x00garbage", NOW)[0].reason == "not-json"  # type: ignore[union-attr]
    assert b.remote_value("_http._tcp", b"{}", NOW) == []  # not a bridged type
    assert b.stats.rejected == {"other-network": 1, "not-json": 1}


def test_unroutable_service_not_exported() -> None:
    a = bridge("campus-a")
    acts = a.local_up(replace(PRINTER, addresses=("127.0.0.1", "fe80::1")), NOW)
    assert puts(acts) == [] and a.stats.rejected["no-routable-address"] == 1


def test_service_losing_its_last_routable_address_is_withdrawn() -> None:
    a = bridge("campus-a")
    a.local_up(PRINTER, NOW)
    [tomb] = puts(a.local_up(replace(PRINTER, addresses=("fe80::9",)), NOW + 1))
    assert tomb.gone


def test_shutdown_tombstones_exports_and_withdraws_imports() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    deliver(b.local_up(replace(PRINTER, instance="B printer", addresses=("10.2.0.5",)), NOW), a)
    a.local_up(PRINTER, NOW)
    acts = a.shutdown(NOW + 1)
    assert [p.gone for p in puts(acts)] == [True]
    assert Withdraw(T, "B printer", "campus-b") in acts


def test_sequence_numbers_survive_restart_monotonically() -> None:
    a = bridge("campus-a")
    a.local_up(PRINTER, NOW)
    restarted = Bridge(a.settings, last_seq=a.seq)
    [p] = puts(restarted.local_up(PRINTER, NOW - 3600))  # even with the clock set back
    assert protocol.decode(p.data).seq > a.seq


def test_export_only_and_import_only() -> None:
    exp_only = bridge("campus-a", import_=False)
    imp_only = bridge("campus-b", export=False)
    assert puts(imp_only.local_up(PRINTER, NOW)) == []
    acts = exp_only.local_up(PRINTER, NOW)
    assert len(deliver(acts, imp_only)) == 1
    assert deliver(imp_only.local_up(PRINTER, NOW), exp_only) == []


def test_follower_tracks_silently_and_takes_over_at_once() -> None:
    a, follower = bridge("campus-a"), Bridge(bridge("campus-b").settings, active=False)
    b_local = replace(PRINTER, instance="B printer", host="bp", addresses=("10.2.0.5",))
    assert follower.local_up(b_local, NOW) == []  # followers do not export
    assert deliver(a.local_up(PRINTER, NOW), follower) == []  # ...nor publish imports
    acts = follower.set_active(True, NOW + 1)
    [pub] = [x for x in acts if isinstance(x, Publish)]
    assert pub.service.instance == "Printer"
    [put] = puts(acts)
    assert protocol.decode(put.data).service.instance == "B printer"


def test_stepping_down_withdraws_imports_without_tombstones() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    deliver(a.local_up(PRINTER, NOW), b)
    b.local_up(replace(PRINTER, instance="B printer", host="bp", addresses=("10.2.0.5",)), NOW)
    acts = b.set_active(False, NOW + 1)
    assert acts == [Withdraw(T, "Printer", "campus-a")]
    assert b.exports() == [] and b.imports() == []
    assert b.tick(NOW + 100) == []  # nothing refreshed while a follower
