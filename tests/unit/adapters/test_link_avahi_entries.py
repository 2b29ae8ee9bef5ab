"""AvahiLink's entry-group calls, checked against D-Bus signatures without a daemon."""

from __future__ import annotations

import pytest

pytest.importorskip("avahi", reason="needs python3-avahi (the avahi module)")
dbus = pytest.importorskip("dbus", reason="needs python3-dbus")

from z2z.adapters.link.avahi import AvahiLink  # noqa: E402
from z2z.adapters.link.avahi.publishing import _Group, _Published  # noqa: E402
from z2z.core.records import Service  # noqa: E402


def test_service_entries_add_subtypes_after_the_service_with_matching_signatures() -> None:
    link = AvahiLink(subtypes=["_universal._sub._ipp._tcp"])
    service = Service("_ipp._tcp", "Room 2.14 Printer", "p-campus-a-z2z", 631, (b"rp=ipp/print",),
                      ("10.77.1.10",), ("_print", "_universal"))  # fmt: skip
    entries = link._service_entries(_Published(service, service.instance, _Group()))
    assert [method for method, _, _ in entries] == ["AddService", "AddServiceSubtype", "AddServiceSubtype"]
    for method, signature, args in entries:
        assert len(list(dbus.Signature(signature))) == len(args), (method, signature, args)
    assert [args[-1] for _, _, args in entries[1:]] == ["_print._sub._ipp._tcp", "_universal._sub._ipp._tcp"]
    assert all(args[3] == "Room 2.14 Printer" for _, _, args in entries)  # the name as avahi takes it


def test_configured_subtypes_are_browsed_per_type() -> None:
    link = AvahiLink(
        subtypes=["_universal._sub._ipp._tcp", "_universal._sub._ipps._tcp", "_cups._sub._ipp._tcp"]
    )
    assert link._subtypes == {"_ipp._tcp": ("_universal", "_cups"), "_ipps._tcp": ("_universal",)}
