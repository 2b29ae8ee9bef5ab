"""Per-site digests of what a site exports: anti-entropy that compares before it downloads.

An importer used to repair missed pushes by a full `get` of every type key each
anti-entropy period: on the REST proxy that streams every value under the key,
again and again, although nothing changed.  Instead each exporting site keeps
one small *summary* per type under the type's summary key (`summary_key_name`):
how many services it exports and a digest of their contents.  An importer reads
the summaries first (a few hundred bytes per site) and does the full `get` only
when a site's digest differs from the digest of what it holds from that site
(docs/protocol.md, "Anti-entropy by digest").

The digest covers each instance's name and its records (`content_digest`), not
its sequence number or timestamps, so a new version of an unchanged service
(made when the old one nears its TTL) does not change it; a summary's bytes stay
the same while nothing changes, so re-putting it is a refresh in place (the same
value id, no new version under the key).  Pure: bytes in, bytes out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from z2z.core.errors import Z2zError
from z2z.core.records import RecordError, Service, encode_service, normalize_type
from z2z.core.wire.envelope import valid_site

FORMAT = 1
MAX_BYTES = 1024
DIGEST_BYTES = 16
_FIELDS = {"z2z", "sum", "net", "site", "type", "seq", "n", "d"}


class SummaryError(Z2zError, ValueError):
    """A summary value z2z refuses."""

    default_reason = "bad-summary"


def summary_key_name(service_type: str) -> str:
    """The name whose DHT key holds the summaries of `service_type` (keys derive like type keys)."""
    return f"{service_type}#sites"


def content_digest(service: Service) -> bytes:
    """What an instance is, for comparison: a hash of its records as they travel (DNS wire).

    The first two bytes (the DNS message id, random per encoding) are left out.
    """
    return hashlib.blake2b(encode_service(service)[2:], digest_size=DIGEST_BYTES).digest()


def set_digest(items: Iterable[tuple[str, bytes]]) -> tuple[int, str]:
    """(count, hex digest) of a site's services of one type: (instance, content digest) pairs."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    n = 0
    for instance, digest in sorted(items):
        h.update(instance.encode() + b"\0" + digest)
        n += 1
    return n, h.hexdigest()


@dataclass(frozen=True, slots=True)
class Summary:
    """One site's summary of one type: `count` services whose set digest is `digest`.

    `seq` orders a site's summaries (from the site's sequence numbers): an
    importer keeps the highest.  No timestamp: the bytes stay the same while the
    site's services do, so a re-put refreshes the value in place.
    """

    network: str
    site: str
    service_type: str
    seq: int
    count: int
    digest: str


def encode(summary: Summary) -> bytes:
    doc = {
        "z2z": FORMAT,
        "sum": 1,
        "net": summary.network,
        "site": summary.site,
        "type": summary.service_type,
        "seq": summary.seq,
        "n": summary.count,
        "d": summary.digest,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def decode(data: bytes) -> Summary:
    """Parse a summary value strictly; SummaryError says why not."""
    if len(data) > MAX_BYTES:
        raise SummaryError(f"{len(data)} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise SummaryError("not JSON") from None
    if not isinstance(doc, dict) or set(doc) != _FIELDS or doc.get("sum") != 1:
        raise SummaryError("not a summary")
    if doc["z2z"] != FORMAT or isinstance(doc["z2z"], bool):
        raise SummaryError("unknown format")
    net, site, service_type, digest = doc["net"], doc["site"], doc["type"], doc["d"]
    seq, count = doc["seq"], doc["n"]
    if not all(isinstance(v, str) for v in (net, site, service_type, digest)):
        raise SummaryError("bad field")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (seq, count)):
        raise SummaryError("bad field")
    if not valid_site(site):
        raise SummaryError("bad site")
    if not 0 <= seq < 2**63 or not 0 <= count <= 1_000_000:
        raise SummaryError("seq/n out of range")
    if len(digest) != 2 * DIGEST_BYTES or any(c not in "0123456789abcdef" for c in digest):
        raise SummaryError("bad digest")
    try:
        service_type = normalize_type(service_type)
    except RecordError as exc:
        raise SummaryError(str(exc)) from None
    return Summary(net, site, service_type, seq, count, digest)
