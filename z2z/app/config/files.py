"""The config file: reading it (`load_file`), checking all of it at once (`check_file`, for
`z2z check-config`), and the key reference of docs/configuration.md (`render_reference`).
"""

from __future__ import annotations

import os
import re
import tomllib
from typing import Any

from z2z.app.config.checks import ConfigError
from z2z.app.config.schema import FIELD_DOCS, FIELDS, RELOADABLE, GatewayConfig, build, check_settings


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a TOML config file; return its settings keyed by flag name."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:  # the message carries "(at line N, column M)"
        raise ConfigError(f"config file {path}: {exc}") from None
    except RecursionError:  # a = [[[[… (found by fuzzing)
        raise ConfigError(f"config file {path}: values nested too deeply") from None
    return check_settings(doc, source=str(path))


# ---------------------------------------------------------------------------
# the reference: one line per key, rendered into docs/configuration.md
# (a test checks the file against it), so neither can drift from the code.


def _toml_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def render_reference() -> str:
    """The key reference of docs/configuration.md, in Markdown (generated from FIELDS)."""
    defaults = GatewayConfig(site="(host name)", state_dir="/var/lib/z2z")
    rows = ["| key / flag | default | on SIGHUP | meaning |", "|---|---|---|---|"]
    for key in FIELDS:
        value = getattr(defaults, key.replace("-", "_"))
        default = {"site": "host name", "state-dir": "`/var/lib/z2z`"}.get(key) or _toml_value(value)
        if key in ("export-types", "import-types"):
            default = "`type`"
        reload = "applied" if key in RELOADABLE else "restart"
        rows.append(f"| `{key}` / `--{key}` | {default} | {reload} | {FIELD_DOCS.get(key, '')} |")
    return "\n".join(rows) + "\n"


def _key_lines(text: str) -> dict[str, int]:
    """Line numbers of top-level ``key = ...`` lines (tomllib gives lines only for syntax errors)."""
    lines: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            break  # a table: everything after it is not top-level
        m = re.match(r'^\s*("?)([A-Za-z0-9_-]+)\1\s*=', line)
        if m:
            lines.setdefault(m.group(2), n)
    return lines


def check_file(path: str | os.PathLike[str]) -> list[str]:
    """Every problem in config file `path`, one line each (``FILE:LINE: key: why``); [] when fine.

    Unlike `load_file`, it does not stop at the first bad key, and it also checks
    what `build` checks across keys (refresh below ttl, something to bridge).
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
    except FileNotFoundError:
        return [f"{path}: config file does not exist"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{path}: {exc}"]
    except tomllib.TOMLDecodeError as exc:
        return [f"{path}: {exc}"]
    except RecursionError:
        return [f"{path}: values nested too deeply"]
    lines = _key_lines(text)
    problems: list[str] = []
    good: dict[str, Any] = {}
    for key, value in doc.items():
        where = f"{path}:{lines[key]}" if key in lines else str(path)
        if key not in FIELDS:
            kind = "table" if isinstance(value, dict) else "key"
            problems.append(f"{where}: unknown {kind} {key!r} (known keys: {', '.join(sorted(FIELDS))})")
            continue
        try:
            good[key] = FIELDS[key](key, value)
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
    if not problems:
        try:
            build(good, {})
        except ConfigError as exc:
            problems.append(f"{path}: {exc}")
    return problems
