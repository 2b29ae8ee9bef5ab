"""Refreshes that do not pile up versions in the DHT (issue 17).

OpenDHT refreshes a value re-put with the same id and bytes in place, but keeps
every new id for 10 minutes: a refresh re-puts the current version byte for byte
while importers keep it for two more refresh periods, and only then makes a new one."""

from __future__ import annotations

from test_bridge import NOW, PRINTER, T, bridge, deliver, puts

from z2z.core.bridge import Withdraw


def test_a_refresh_re_puts_the_same_version_while_it_stays_valid() -> None:
    a, b = bridge("campus-a", ttl=120, refresh=40.0), bridge("campus-b")
    [first] = puts(a.local_up(PRINTER, NOW))
    deliver([first], b)
    [again] = puts(a.tick(NOW + 40))  # valid until +120: 80 s left, two refresh periods
    assert (again.value_id, again.data, again.why) == (first.value_id, first.data, "refresh")
    assert deliver([again], b, NOW + 40) == []  # nothing to do on the link
    [newer] = puts(a.tick(NOW + 80))  # 40 s left: a new version, with a new id
    assert newer.value_id != first.value_id and newer.data != first.data
    assert deliver([newer], b, NOW + 80) == []
    assert b.tick(NOW + 160) == []  # the new version carries the import past the first's expiry
    assert b.tick(NOW + 80 + 120 + 31) == [Withdraw(T, "Printer", "campus-a")]  # origin gone


def test_versions_under_the_key_halve_with_the_defaults_and_vanish_with_a_long_ttl() -> None:
    def versions(ttl: int, refresh: float) -> int:
        a = bridge("campus-a", ttl=ttl, refresh=refresh)
        ids = {p.value_id for p in puts(a.local_up(PRINTER, NOW))}
        for t in range(1, 601):  # OpenDHT keeps each id 600 s: every id put in that window is stored
            ids |= {p.value_id for p in puts(a.tick(NOW + t))}
        return len(ids)

    assert versions(120, 40.0) == 8  # was 16 with a new version per refresh
    assert versions(600, 40.0) == 2
    assert versions(50, 20.0) == 31  # ttl < 3 × refresh: a new version every refresh, as before


def test_a_change_is_a_new_version_at_once() -> None:
    a = bridge("campus-a", ttl=120, refresh=40.0)
    [first] = puts(a.local_up(PRINTER, NOW))
    [changed] = puts(a.local_up(PRINTER.__class__(T, "Printer", "printer", 632, (), ("10.1.0.9",)), NOW + 10))
    assert changed.value_id != first.value_id
    [again] = puts(a.tick(NOW + 50))  # the refresh re-puts the changed version, not the first
    assert again.value_id == changed.value_id
