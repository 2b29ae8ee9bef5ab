"""A reload of ``subtypes`` reaches the link: the gateway hands the new list to the backend,
and python-zeroconf's backend browses it at once, so a printer already known gains its subtype.

The link test runs two real `ZeroconfLink`s on loopback (multicast looped back on one host).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from support.helpers import until
from zeroconf import IPVersion

from z2z.adapters.link.base import LinkError, SubtypeBrowsing, reload_subtypes
from z2z.adapters.link.memory import MemoryLink
from z2z.adapters.link.zeroconf import ZeroconfLink
from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
from z2z.app.config import RELOADABLE, build
from z2z.app.gateway import Gateway
from z2z.core.records import Service

T = "_ipp._tcp"
PRINTER = Service(T, "Room 2.14 Printer", "printer", 631, (b"rp=ipp/print",), ("127.0.0.1",), ("_universal",))


class Listener:
    def __init__(self) -> None:
        self.up: list[Service] = []

    def service_up(self, service: Service) -> None:
        self.up.append(service)

    def service_down(self, service_type: str, instance: str) -> None:
        pass

    def service_refused(self, name: str, reason: str) -> None:
        pass


class SubtypeLink(MemoryLink):
    def __init__(self) -> None:
        super().__init__()
        self.subtype_lists: list[tuple[str, ...]] = []

    async def set_subtypes(self, names: Sequence[str]) -> None:
        self.subtype_lists.append(tuple(names))


def test_subtypes_is_reloadable() -> None:
    assert "subtypes" in RELOADABLE
    assert isinstance(SubtypeLink(), SubtypeBrowsing) and not isinstance(MemoryLink(), SubtypeBrowsing)


async def test_a_reload_hands_the_new_subtypes_to_the_link(tmp_path: Path) -> None:
    cfg = build(
        {}, {"site": "campus-a", "type": (T,), "state-dir": str(tmp_path), "election": False, "public": True}
    )
    link = SubtypeLink()
    gw = Gateway(cfg, link, MemoryRendezvous(MemoryDht()))
    await gw.start()
    try:
        gw.reload(replace(gw.config, log_level=gw.config.log_level))  # unchanged: the link is left alone
        gw.reload(replace(gw.config, subtypes=("_print._sub._ipp._tcp",)))
        await until(lambda: link.subtype_lists == [("_print._sub._ipp._tcp",)])
        assert gw.config.subtypes == ("_print._sub._ipp._tcp",)
    finally:
        await gw.stop()


async def test_a_backend_without_it_or_a_bad_name_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    await reload_subtypes(MemoryLink(), ["_universal._sub._ipp._tcp"])
    assert "needs a restart" in caplog.text

    class Refusing(SubtypeLink):
        async def set_subtypes(self, names: Sequence[str]) -> None:
            raise LinkError("bad subtype")

    await reload_subtypes(Refusing(), ["x"])
    assert "subtypes not applied: bad subtype" in caplog.text


async def test_the_zeroconf_link_browses_reloaded_subtypes_at_once() -> None:
    """The printer is known before its subtype is browsed; after set_subtypes it comes back with it."""
    printer = ZeroconfLink(["127.0.0.1"], ip_version=IPVersion.V4Only)
    await printer.start([T], Listener())
    await printer.publish(PRINTER)
    await asyncio.sleep(2.5)  # the announcements (with their subtype PTRs) are over
    seen = Listener()
    gateway = ZeroconfLink(["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        await gateway.start([T], seen)
        await until(lambda: any(s.instance == PRINTER.instance for s in seen.up), timeout=10)
        assert seen.up[-1].subtypes == ()  # a PTR query for the type does not bring subtype PTRs
        await gateway.set_subtypes(["_universal._sub._ipp._tcp"])
        await until(lambda: seen.up[-1].subtypes == ("_universal",), timeout=10)
        assert seen.up[-1] == PRINTER
        with pytest.raises(LinkError):
            await gateway.set_subtypes(["not a subtype"])
    finally:
        await gateway.close()
        await printer.close()
