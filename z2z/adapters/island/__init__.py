"""What the gateways of one island say to each other directly (unicast), beside mDNS."""

from z2z.adapters.island.heartbeat import HeartbeatSocket, split_contact

__all__ = ["HeartbeatSocket", "split_contact"]
