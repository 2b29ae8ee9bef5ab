"""Export and import: the pure state machine at the heart of a gateway.

`bridge` holds the rules, `actions` what it asks the adapters to do, `imports`
the import table with its per-site totals.
"""

from z2z.core.bridge.actions import Action, Damped, Publish, Put, Reject, TrustNews, Withdraw
from z2z.core.bridge.bridge import PROXY_MARK, Bridge, BridgeSettings, BridgeStats

__all__ = [
    "PROXY_MARK",
    "Action",
    "Bridge",
    "BridgeSettings",
    "BridgeStats",
    "Damped",
    "Publish",
    "Put",
    "Reject",
    "TrustNews",
    "Withdraw",
]
