"""xmppd's load generator: a lean raw XMPP client (TCP, TLS, WebSocket) and registered scenarios."""
from .core import REGISTRY, Context, NotAvailable, Target, run_scenario, scenario
from . import scenarios as _scenarios  # noqa: F401  (registers the built-in scenarios)

__all__ = ["REGISTRY", "Context", "NotAvailable", "Target", "run_scenario", "scenario"]
