"""The relay's sockets: TLS 1.3 channels between gateways, listeners for relayed imports, splicing."""

from z2z.adapters.relay.channel import RelayConnector, RelayServer, StreamLimits, tls_contexts
from z2z.adapters.relay.splice import splice

__all__ = ["RelayConnector", "RelayServer", "StreamLimits", "splice", "tls_contexts"]
