"""What may cross the gateway, per direction: the admin's filters, as a pure value.

`Policy` answers two questions for the bridge (`z2z.core.bridge`), before anything is
put into the DHT or published on the link:

- may this local service be exported?  (`export_verdict`)
- may this remote service, from this site, be imported?  (`import_verdict`)

Each answer is ``None`` (it may cross) or the name of the rule that stops it.
Rule names are the config keys (docs/configuration.md), so `z2z status` can say
"import-never-from stopped 2" and the admin knows which line of the file did it.

Order of the checks, deny before allow: the type lists (``export-types`` /
``import-types``, where ``"*"`` means every type, minus ``deny-types``), then the
sites (``import-never-from``, then ``import-from``), then the instance-name
patterns (``*-deny``, then ``*-allow``).  Patterns are shell globs (``*``, ``?``,
``[...]``) matched case-insensitively, as mDNS compares names.

`FilterStats` counts what each rule stopped, once per distinct record, so the
anti-entropy repeating the same value every 30 s does not inflate the count.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from z2z.core.records import Service

WILDCARD = "*"
# DNS-SD's type enumeration (RFC 6763 §9): answers are PTRs to every type on the link.
META_QUERY = "_services._dns-sd._udp"

# The rule names, as the config keys that set them.
EXPORT_TYPES = "export-types"
IMPORT_TYPES = "import-types"
DENY_TYPES = "deny-types"
EXPORT_ALLOW = "export-allow"
EXPORT_DENY = "export-deny"
IMPORT_ALLOW = "import-allow"
IMPORT_DENY = "import-deny"
IMPORT_FROM = "import-from"
IMPORT_NEVER_FROM = "import-never-from"
RULES = (
    EXPORT_TYPES,
    IMPORT_TYPES,
    DENY_TYPES,
    EXPORT_ALLOW,
    EXPORT_DENY,
    IMPORT_ALLOW,
    IMPORT_DENY,
    IMPORT_FROM,
    IMPORT_NEVER_FROM,
)


def _fold(patterns: Iterable[str]) -> tuple[str, ...]:
    return tuple(p.casefold() for p in patterns)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    folded = name.casefold()
    return any(fnmatch.fnmatchcase(folded, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class Policy:
    """The filters of one gateway; empty allow lists allow everything.

    `export_types` / `import_types` are bare service types or ``"*"``; an empty
    tuple bridges nothing that way (one-way bridging).  Build it with
    `Policy.make` so that patterns are folded once.
    """

    export_types: tuple[str, ...] = ()
    import_types: tuple[str, ...] = ()
    deny_types: tuple[str, ...] = ()
    export_allow: tuple[str, ...] = ()
    export_deny: tuple[str, ...] = ()
    import_allow: tuple[str, ...] = ()
    import_deny: tuple[str, ...] = ()
    import_from: tuple[str, ...] = ()
    import_never_from: tuple[str, ...] = ()

    @classmethod
    def make(
        cls,
        export_types: Iterable[str] = (),
        import_types: Iterable[str] = (),
        *,
        deny_types: Iterable[str] = (),
        export_allow: Iterable[str] = (),
        export_deny: Iterable[str] = (),
        import_allow: Iterable[str] = (),
        import_deny: Iterable[str] = (),
        import_from: Iterable[str] = (),
        import_never_from: Iterable[str] = (),
    ) -> Policy:
        return cls(
            tuple(t.lower() for t in export_types),
            tuple(t.lower() for t in import_types),
            tuple(t.lower() for t in deny_types),
            _fold(export_allow),
            _fold(export_deny),
            _fold(import_allow),
            _fold(import_deny),
            _fold(import_from),
            _fold(import_never_from),
        )

    # -- types -----------------------------------------------------------------

    def _type_rule(self, service_type: str, listed: tuple[str, ...], rule: str) -> str | None:
        t = service_type.lower()
        if t in self.deny_types:
            return DENY_TYPES
        if t in listed or (WILDCARD in listed and t != META_QUERY):
            return None
        return rule

    def exports_type(self, service_type: str) -> bool:
        return self._type_rule(service_type, self.export_types, EXPORT_TYPES) is None

    def imports_type(self, service_type: str) -> bool:
        return self._type_rule(service_type, self.import_types, IMPORT_TYPES) is None

    @property
    def wildcard_export(self) -> bool:
        return WILDCARD in self.export_types

    @property
    def wildcard_import(self) -> bool:
        return WILDCARD in self.import_types

    @property
    def wildcard(self) -> bool:
        """True when some direction bridges every type seen on the link."""
        return self.wildcard_export or self.wildcard_import

    def static_types(self) -> tuple[str, ...]:
        """Every type named in either list (not ``"*"``), minus denied ones: what to browse."""
        named = dict.fromkeys(t for t in self.export_types + self.import_types if t != WILDCARD)
        return tuple(t for t in named if t not in self.deny_types)

    def static_import_types(self) -> tuple[str, ...]:
        return tuple(t for t in dict.fromkeys(self.import_types) if t != WILDCARD and self.imports_type(t))

    # -- verdicts --------------------------------------------------------------

    def export_verdict(self, service: Service) -> str | None:
        """None when `service` (seen on our link) may be exported, else the rule that stops it."""
        rule = self._type_rule(service.type, self.export_types, EXPORT_TYPES)
        if rule is not None:
            return rule
        if _matches(service.instance, self.export_deny):
            return EXPORT_DENY
        if self.export_allow and not _matches(service.instance, self.export_allow):
            return EXPORT_ALLOW
        return None

    def import_verdict(self, site: str, service: Service) -> str | None:
        """None when `service` from `site` may be published on our link, else the stopping rule."""
        rule = self._type_rule(service.type, self.import_types, IMPORT_TYPES)
        if rule is not None:
            return rule
        if _matches(site, self.import_never_from):
            return IMPORT_NEVER_FROM
        if self.import_from and not _matches(site, self.import_from):
            return IMPORT_FROM
        if _matches(service.instance, self.import_deny):
            return IMPORT_DENY
        if self.import_allow and not _matches(service.instance, self.import_allow):
            return IMPORT_ALLOW
        return None


class FilterStats:
    """Distinct records stopped per rule (bounded: past `cap` per rule, new ones are not counted)."""

    def __init__(self, cap: int = 10_000) -> None:
        self.cap = cap
        self._stopped: dict[str, set[Hashable]] = {}

    def stopped(self, rule: str, record: Hashable) -> bool:
        """Count `record` under `rule`; True when it was not counted there before."""
        seen = self._stopped.setdefault(rule, set())
        if record in seen or len(seen) >= self.cap:
            return False
        seen.add(record)
        return True

    def counts(self) -> dict[str, int]:
        return {rule: len(seen) for rule, seen in sorted(self._stopped.items()) if seen}
