"""Small persistent state: this gateway's node id and its last sequence number.

Kept in ``<state-dir>/state.json`` and written atomically (temp file, fsync,
rename), so a `kill -9` at any moment leaves either the old or the new file.  A
missing or unreadable file is not fatal: a new identity is made and the problem
logged; sequence numbers stay monotonic anyway because they never fall below the
clock in milliseconds (see `z2z.core.bridge`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from z2z.core.errors import Z2zError

log = logging.getLogger(__name__)
_FILE = "state.json"


class StateError(Z2zError, OSError):
    """The state directory cannot be created or written."""

    default_reason = "state"


@dataclass(slots=True)
class GatewayState:
    node: str
    last_seq: int = 0


def load(state_dir: str | os.PathLike[str]) -> GatewayState:
    path = Path(state_dir)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateError(f"cannot create state directory {path}: {exc.strerror}") from None
    try:
        doc = json.loads((path / _FILE).read_text("utf-8"))
        node, seq = doc["node"], doc["last_seq"]
        if not (isinstance(node, str) and len(node) == 16 and int(node, 16) >= 0):
            raise ValueError("bad node id")
        if not isinstance(seq, int) or seq < 0:
            raise ValueError("bad sequence number")
        return GatewayState(node, seq)
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError, OSError) as exc:
        log.warning("state file %s unreadable (%s): starting with a new node id", path / _FILE, exc)
    state = GatewayState(secrets.token_hex(8))
    save(path, state)
    return state


def save(state_dir: str | os.PathLike[str], state: GatewayState) -> None:
    """Write the state atomically."""
    write_json(state_dir, _FILE, {"node": state.node, "last_seq": state.last_seq})


def write_json(state_dir: str | os.PathLike[str], name: str, doc: object, *, durable: bool = True) -> None:
    """Write `doc` as JSON to <state_dir>/<name>: temp file, fsync, rename.

    `durable=False` (snapshots such as status.json, which a power cut may lose): compact
    JSON, which json's C encoder writes (``indent`` falls back to the pure-Python one),
    and no fsync, which on a Pi wears the SD card; the rename still makes each version
    appear whole.
    """
    path = Path(state_dir)
    data = (json.dumps(doc, indent=1) if durable else json.dumps(doc, separators=(",", ":"))).encode()
    try:
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".state-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            os.replace(tmp, path / name)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise StateError(f"cannot write state in {path}: {exc.strerror}") from None
