"""The core stays pure: z2z/core imports nothing from the adapters or the app, and no I/O.

The architecture rests on it (docs/architecture.md): every rule of the core is
testable in microseconds and drives the simulator, because nothing in it reads
a clock, opens a socket or touches a file.  This test reads the imports of every
module under z2z/core and fails on anything outside an explicit allow-list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "z2z" / "core"

# Standard-library and third-party modules that do no I/O.
ALLOWED = {
    "__future__",
    "base64",
    "binascii",
    "collections",
    "dataclasses",
    "enum",
    "fnmatch",
    "hashlib",
    "heapq",
    "hmac",
    "ipaddress",
    "itertools",
    "json",
    "math",
    "re",
    "typing",
    "functools",
    "string",
    "unicodedata",
    "struct",
    "abc",
    "bisect",
    "operator",
    "dnslib",  # DNS wire format, no sockets used
    "cryptography",  # sealing and signing
    "os",  # only os.urandom, as the default of an injectable nonce source (checked below)
}


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import; use z2z.core.… so the layering stays visible")
            names.append(node.module or "")
    return names


def test_the_core_has_modules() -> None:
    assert len(core_modules()) > 15  # the test would pass vacuously on a wrong path


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_only_the_core_and_pure_libraries(path: Path) -> None:
    for name in imports_of(path):
        top = name.split(".")[0]
        if top == "z2z":
            assert name == "z2z.core" or name.startswith("z2z.core."), f"{path.name} imports {name}"
        else:
            assert top in ALLOWED, f"{path.name} imports {name}, which is not known to be free of I/O"


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_uses_os_only_for_randomness(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            assert node.attr == "urandom", f"{path.name} uses os.{node.attr}"


def test_the_checker_catches_an_adapter_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from z2z.adapters.link.base import LinkError\nimport socket\n")
    names = imports_of(bad)
    assert "z2z.adapters.link.base" in names and "socket" in names
