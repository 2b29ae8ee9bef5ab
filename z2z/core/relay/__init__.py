"""The relay through the gateways (docs/relay.md): when to relay, what crosses, who may ask.

Pure like the rest of the core: `decision` says per remote service whether the
link gets the exporting site's own addresses or a proxy on this gateway;
`protocol` is the request a relay stream starts with, the exporting side's
rule for it, and the per-site record that says how a site's relay is reached;
the certificates (z2z.adapters.relay.pki) and sockets are in z2z.adapters.relay.
"""

from z2z.core.relay.decision import MODES, Decision, decide
from z2z.core.relay.protocol import (
    RELAY_RECORD_TYPE,
    RelayError,
    RelayRecord,
    StreamRequest,
    decode_record,
    decode_reply,
    decode_request,
    encode_record,
    encode_reply,
    encode_request,
    exported_target,
)

__all__ = [
    "MODES",
    "RELAY_RECORD_TYPE",
    "Decision",
    "RelayError",
    "RelayRecord",
    "StreamRequest",
    "decide",
    "decode_record",
    "decode_reply",
    "decode_request",
    "encode_record",
    "encode_reply",
    "encode_request",
    "exported_target",
]
