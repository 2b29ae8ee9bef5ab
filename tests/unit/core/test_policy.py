"""Filters (z2z.core.policy) alone and as the bridge applies them: what a rule stops
never becomes a Put (export) or a Publish (import), and every stop is counted."""

from __future__ import annotations

from dataclasses import replace

import pytest

from z2z.core.bridge import Bridge, BridgeSettings, Publish, Put, Withdraw
from z2z.core.policy import FilterStats, Policy
from z2z.core.records import Service

T, D = "_ipp._tcp", "_daap._tcp"
PRINTER = Service(T, "Floor 2 Printer", "printer", 631, (b"rp=ipp/print",), ("10.1.0.9", "2001:db8::9"))
MUSIC = Service(D, "Music", "nas", 3689, (), ("10.1.0.7",))
NOW = 1_800_000_000.0


def bridge(site: str, policy: Policy, **kw: object) -> Bridge:
    return Bridge(BridgeSettings(site=site, network="z2z", node="00" * 8, types=(T, D), policy=policy, **kw))  # type: ignore[arg-type]


def puts(actions: list) -> list[Put]:
    return [a for a in actions if isinstance(a, Put)]


def deliver(actions: list, to: Bridge, now: float = NOW) -> list:
    out: list = []
    for p in puts(actions):
        out += to.remote_value(p.service_type, p.data, now)
    return out


ALL = Policy.make((T, D), (T, D))


# -- the policy alone ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "service", "site", "export", "import_"),
    [
        (ALL, PRINTER, "b", None, None),
        (Policy.make((), (T,)), PRINTER, "b", "export-types", None),  # import-only
        (Policy.make((T,), ()), PRINTER, "b", None, "import-types"),  # export-only
        (Policy.make(("*",), ("*",)), MUSIC, "b", None, None),
        (Policy.make(("*",), ("*",), deny_types=(D,)), MUSIC, "b", "deny-types", "deny-types"),
        (Policy.make((T,), (T,), export_deny=("floor 2 *",)), PRINTER, "b", "export-deny", None),
        (Policy.make((T,), (T,), export_allow=("Lobby*",)), PRINTER, "b", "export-allow", None),
        (Policy.make((T,), (T,), import_deny=("*PRINTER",)), PRINTER, "b", None, "import-deny"),
        (Policy.make((T,), (T,), import_allow=("Floor ?*",)), PRINTER, "b", None, None),
        (Policy.make((T,), (T,), import_from=("campus-*",)), PRINTER, "dorm", None, "import-from"),
        (Policy.make((T,), (T,), import_from=("campus-*",)), PRINTER, "Campus-B", None, None),
        (
            Policy.make((T,), (T,), import_never_from=("dorm",), import_from=("dorm",)),
            PRINTER,
            "dorm",
            None,
            "import-never-from",
        ),
    ],
)
def test_verdicts(
    policy: Policy, service: Service, site: str, export: str | None, import_: str | None
) -> None:
    assert policy.export_verdict(service) == export
    assert policy.import_verdict(site, service) == import_


def test_wildcard_never_means_the_meta_query_and_static_types() -> None:
    p = Policy.make(("*", T), (D,), deny_types=(T,))
    assert not p.exports_type("_services._dns-sd._udp")
    assert p.exports_type("_airplay._tcp") and not p.imports_type("_airplay._tcp")
    assert p.static_types() == (D,)  # T is denied
    assert p.wildcard_export and not p.wildcard_import


def test_filter_stats_count_distinct_records_and_are_bounded() -> None:
    st = FilterStats(cap=2)
    assert st.stopped("export-deny", 1) and not st.stopped("export-deny", 1)
    st.stopped("export-deny", 2)
    st.stopped("export-deny", 3)
    st.stopped("import-from", "x")
    assert st.counts() == {"export-deny": 2, "import-from": 1}


# -- in the bridge --------------------------------------------------------------------


def test_filtered_export_never_reaches_the_dht_and_is_counted() -> None:
    a = bridge("campus-a", Policy.make((T, D), (T, D), export_deny=("Floor*",)))
    assert a.local_up(PRINTER, NOW) == []
    assert a.local_up(PRINTER, NOW + 1) == []  # seen again: counted once
    assert puts(a.local_up(MUSIC, NOW))
    assert a.filtered.counts() == {"export-deny": 1}
    assert [s.instance for s in a.exports()] == ["Music"]


def test_filtered_import_never_reaches_the_link() -> None:
    a = bridge("campus-a", ALL)
    b = bridge("campus-b", Policy.make((T, D), (T, D), import_never_from=("campus-a",)))
    c = bridge("campus-c", Policy.make((T, D), (D,)))  # imports music only
    acts = a.local_up(PRINTER, NOW) + a.local_up(MUSIC, NOW)
    assert deliver(acts, b) == []
    assert b.imports() == [] and b.filtered.counts() == {"import-never-from": 2}
    [pub] = deliver(acts, c)  # the printer value is not even looked at (no listen on its key)
    assert isinstance(pub, Publish) and pub.service.instance == "Music"


def test_one_way_bridging() -> None:
    exporter = bridge("campus-a", Policy.make((T,), ()))
    importer = bridge("campus-b", Policy.make((), (T,)))
    acts = exporter.local_up(PRINTER, NOW)
    [pub] = deliver(acts, importer)
    assert pub.service.instance == PRINTER.instance
    # ...and nothing goes the other way
    assert importer.local_up(replace(PRINTER, instance="B Printer"), NOW) == []
    assert importer.filtered.counts() == {"export-types": 1}
    assert exporter.remote_value(T, puts(acts)[0].data, NOW) == []


def test_ipv6_addresses_cross_and_link_local_do_not() -> None:
    a, b = bridge("campus-a", ALL), bridge("campus-b", ALL)
    v6only = replace(PRINTER, addresses=("fe80::1", "::1", "2001:db8:1::9", "fd77:1::10"))
    [pub] = deliver(a.local_up(v6only, NOW), b)
    assert pub.service.addresses == ("2001:db8:1::9", "fd77:1::10")


def test_reconfigure_keeps_what_is_still_allowed() -> None:
    a, b = bridge("campus-a", ALL), bridge("campus-b", ALL)
    lobby = replace(PRINTER, instance="Lobby Printer")
    acts = a.local_up(PRINTER, NOW) + a.local_up(lobby, NOW) + a.local_up(MUSIC, NOW)
    assert len(deliver(acts, b)) == 3

    # b stops importing music and anything called Floor*; the lobby printer stays untouched
    new = replace(b.settings, policy=Policy.make((T, D), (T,), import_deny=("floor*",)))
    out = b.reconfigure(new, NOW + 1)
    assert sorted(out, key=repr) == [
        Withdraw(D, "Music", "campus-a"),
        Withdraw(T, "Floor 2 Printer", "campus-a"),
    ]
    assert [s.instance for _, s in b.imports()] == ["Lobby Printer"]
    assert b.filtered.counts() == {"import-deny": 1, "import-types": 1}

    # a stops exporting the lobby printer: a tombstone, nothing else re-put
    out = a.reconfigure(
        replace(a.settings, policy=Policy.make((T, D), (T, D), export_deny=("Lobby*",))), NOW + 2
    )
    [tomb] = puts(out)
    assert tomb.gone and tomb.instance == "Lobby Printer"
    assert deliver(out, b, NOW + 2) == [Withdraw(T, "Lobby Printer", "campus-a")]

    # allowing it again exports it again at once
    out = a.reconfigure(replace(a.settings, policy=ALL), NOW + 3)
    assert [(p.instance, p.why) for p in puts(out)] == [("Lobby Printer", "new")]


def test_reconfigure_new_host_template_republishes() -> None:
    a, b = bridge("campus-a", ALL), bridge("campus-b", ALL)
    deliver(a.local_up(PRINTER, NOW), b)
    out = b.reconfigure(replace(b.settings, host_template="{site}-{host}"), NOW + 1)
    assert [type(x).__name__ for x in out] == ["Withdraw", "Publish"]
    assert out[1].service.host == "campus-a-printer-z2z"
    assert b.reconfigure(b.settings, NOW + 2) == []  # same settings: nothing moves
