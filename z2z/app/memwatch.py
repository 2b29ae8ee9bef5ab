"""Look inside a running gateway's memory: what grows, and where (a debugging aid).

Set ``Z2Z_MEMWATCH=SECONDS`` in the environment of ``z2z run`` and every SECONDS
the gateway logs (logger ``z2z.app.memwatch``, at INFO, so that the rest of the
gateway may stay at its own level):

- its resident memory (VmRSS);
- the allocation sites that grew most since the previous report and since the
  first one (``tracemalloc``, started at that moment; it costs memory and CPU,
  so this is not for production);
- the object types whose count grew most (``gc``), which is how growth inside
  compiled code (python-zeroconf is built with Cython) becomes visible;
- the size of every container reachable from the gateway (z2z's own dicts and
  sets: flap merits, graveyards, imports, seen digests, ...) and of
  python-zeroconf's caches (records, service cache, registry, question
  history, listeners, browsers' pending state), each logged when it changed.

``Z2Z_MEMWATCH_TOP`` sets how many lines of each kind (default 10).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

ENV = "Z2Z_MEMWATCH"
ENV_TOP = "Z2Z_MEMWATCH_TOP"
_CONTAINERS = (dict, set, frozenset, list, tuple)
_MAX_DEPTH = 5


def interval_from_env(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between reports, or None when memory watching is off (or the value is bad)."""
    raw = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of seconds: memory watching stays off", ENV, raw)
        return None
    if not seconds > 0:
        log.warning("%s=%r must be > 0: memory watching stays off", ENV, raw)
        return None
    return seconds


def rss_kib() -> int:
    """This process's resident memory in KiB (0 where /proc is not there)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _is_z2z(obj: object) -> bool:
    return type(obj).__module__.startswith("z2z.")


def container_sizes(root: object, prefix: str = "gateway") -> dict[str, int]:
    """len() of every container attribute reachable from `root` through z2z objects.

    Walks instance attributes (``__dict__`` and ``__slots__``) of z2z objects,
    depth first, each object once; a container's own items are not walked.
    """
    sizes: dict[str, int] = {}
    seen: set[int] = set()

    def attrs(obj: object) -> Iterator[tuple[str, Any]]:
        names = list(getattr(obj, "__dict__", {}) or {})
        for cls in type(obj).__mro__:
            slots = cls.__dict__.get("__slots__", ())
            names.extend([slots] if isinstance(slots, str) else slots)
        for name in names:
            try:
                yield name, getattr(obj, name)
            except AttributeError:
                continue

    def walk(obj: object, path: str, depth: int) -> None:
        if id(obj) in seen or depth > _MAX_DEPTH:
            return
        seen.add(id(obj))
        if isinstance(obj, dict) and _is_z2z(obj):  # a z2z dict subclass (ImportTable)
            sizes[path] = len(obj)
        for name, value in attrs(obj):
            where = f"{path}.{name}"
            if isinstance(value, _CONTAINERS) and not _is_z2z(value):
                if id(value) not in seen:
                    seen.add(id(value))
                    sizes[where] = len(value)
                    if isinstance(value, dict) and value:
                        inner = [v for v in list(value.values())[:1000] if isinstance(v, _CONTAINERS)]
                        if inner:  # a dict of sets (per rule, per site...): the items inside count too
                            sizes[f"{where}[*]"] = sum(len(v) for v in inner)
            elif _is_z2z(value):
                walk(value, where, depth + 1)

    walk(root, prefix, 0)
    return sizes


def zeroconf_sizes(zc: Any, browsers: list[Any] = []) -> dict[str, int]:  # noqa: B006
    """Counts of python-zeroconf's caches and tables (its compiled classes expose these)."""
    out: dict[str, int] = {}

    def put(name: str, get: Any) -> None:
        try:
            out[name] = int(get())
        except Exception:  # an attribute renamed in another version: skip it, keep the rest
            return

    cache = zc.cache
    put("zc.cache names", lambda: len(cache.cache))
    put("zc.cache records", lambda: sum(len(v) for v in cache.cache.values()))
    put("zc.cache service_cache servers", lambda: len(cache.service_cache))
    put("zc.cache service_cache records", lambda: sum(len(v) for v in cache.service_cache.values()))
    put("zc.cache expire heap", lambda: len(cache._expire_heap))
    try:
        by_type: Counter[str] = Counter()
        by_name: Counter[str] = Counter()
        for name, records in list(cache.cache.items()):
            by_name[name] = len(records)
            by_type.update(type(r).__name__ for r in records)
        for kind, n in by_type.items():
            out[f"zc.cache records {kind}"] = n
        for name, n in by_name.most_common(3):
            out[f"zc.cache records of {name!r}"] = n
    except Exception:  # another python-zeroconf version: keep the other counts
        pass
    put("zc.cache expirations", lambda: len(cache._expirations))
    put("zc.registry infos", lambda: len(zc.registry.async_get_service_infos()))
    put("zc.registry types", lambda: len(zc.registry.async_get_types()))
    put("zc.question_history", lambda: len(zc.question_history._history))
    put("zc.record_manager listeners", lambda: len(zc.record_manager.listeners))
    put("zc.browsers", lambda: len(zc.browsers))
    put("zc.listeners", lambda: len(zc.listeners))
    put("zc.out_queue", lambda: len(zc.out_queue.queue))
    put("zc.out_delay_queue", lambda: len(zc.out_delay_queue.queue))
    put("zc.notify futures", lambda: len(zc._notify_futures))
    for i, browser in enumerate([*zc.browsers, *browsers]):
        put(f"zc.browser[{i}] pending handlers", lambda b=browser: len(b._pending_handlers))
        sched = getattr(browser, "query_scheduler", None)
        if sched is not None:
            put(f"zc.browser[{i}] scheduled queries", lambda s=sched: len(s._next_scheduled_for_alias))
            put(f"zc.browser[{i}] query heap", lambda s=sched: len(s._query_heap))
    for i, reader in enumerate(getattr(zc.engine, "protocols", ())):
        put(f"zc.protocol[{i}] deferred", lambda r=reader: len(r._deferred))
        put(f"zc.protocol[{i}] timers", lambda r=reader: len(r._timers))
        put(f"zc.protocol[{i}] recent packets", lambda r=reader: len(r._recent_packets))
    return out


class MemWatch:
    """Periodic memory reports of one process; `roots` are walked for container sizes."""

    def __init__(
        self,
        roots: dict[str, object],
        *,
        top: int = 10,
        zc: Callable[[], Any] | None = None,
        browsers: Callable[[], list[Any]] | None = None,
    ) -> None:
        self.browsers = browsers
        self.roots = roots
        self.top = top
        self.zc = zc
        self._first: tracemalloc.Snapshot | None = None
        self._last: tracemalloc.Snapshot | None = None
        self._types0: Counter[str] | None = None
        self._sizes: dict[str, int] = {}
        self._sizes0: dict[str, int] = {}
        self.reports = 0

    def sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, root in self.roots.items():
            out.update(container_sizes(root, name))
        zc = self.zc() if self.zc is not None else None
        if zc is not None:
            browsers = self.browsers() if self.browsers is not None else []
            out.update(zeroconf_sizes(zc, browsers))
        return out

    def report(self) -> None:
        """Log one report (see the module docstring)."""
        if not tracemalloc.is_tracing():
            tracemalloc.start(1)
        self.reports += 1
        snap = tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, __file__),
                tracemalloc.Filter(False, "<frozen *>"),
            )
        )
        traced, _ = tracemalloc.get_traced_memory()
        log.info(
            "memwatch #%d: VmRSS %d KiB, traced by Python %d KiB", self.reports, rss_kib(), traced // 1024
        )
        if self._first is None:
            self._first = snap
        else:
            for label, base in (("since last", self._last), ("since first", self._first)):
                assert base is not None
                for stat in snap.compare_to(base, "lineno")[: self.top]:
                    if stat.size_diff:
                        frame = stat.traceback[0]
                        log.info(
                            "memwatch %s: %+d B (%+d blocks) %s:%d",
                            label,
                            stat.size_diff,
                            stat.count_diff,
                            frame.filename,
                            frame.lineno,
                        )
        self._last = snap
        types = Counter(type(o).__qualname__ for o in gc.get_objects())
        if self._types0 is None:
            self._types0 = types
        else:
            grown = Counter({t: n - self._types0.get(t, 0) for t, n in types.items()})
            for name, diff in grown.most_common(self.top):
                if diff > 0:
                    log.info("memwatch objects since first: %+d %s (now %d)", diff, name, types[name])
        sizes = self.sizes()
        if not self._sizes0:
            self._sizes0 = dict(sizes)
        for name, n in sorted(sizes.items()):
            if n != self._sizes.get(name):
                log.info("memwatch size %s = %d (first %d)", name, n, self._sizes0.get(name, 0))
        self._sizes = sizes

    @classmethod
    def from_env(cls, gateway: Any) -> tuple[MemWatch, float] | None:
        """A watch over `gateway` and its period, if ``Z2Z_MEMWATCH`` asks for one."""
        every = interval_from_env()
        if every is None:
            return None
        try:
            top = max(1, int(os.environ.get(ENV_TOP, "10")))
        except ValueError:
            top = 10

        def zc() -> Any:
            aiozc = getattr(gateway.link, "_aiozc", None)  # the python-zeroconf link backend
            return getattr(aiozc, "zeroconf", None)

        log.info("memwatch: reporting every %g s (tracemalloc on: slower, bigger)", every)

        def browsers() -> list[Any]:
            return list(getattr(gateway.link, "_browsers", ()))

        return cls({"gateway": gateway}, top=top, zc=zc, browsers=browsers), every

    async def run(self, every: float) -> None:
        """Report every `every` seconds until cancelled; a failing report is logged, not fatal."""
        while True:
            try:
                self.report()
            except Exception:
                log.exception("memwatch report failed")
            await asyncio.sleep(every)
