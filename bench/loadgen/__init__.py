"""xmppd's load generator: a lean raw XMPP client (TCP, TLS, WebSocket) and registered scenarios."""
from . import scenarios as _scenarios  # noqa: F401  (registers the built-in scenarios)
from .core import REGISTRY, Context, NotAvailable, Target, run_scenario, scenario

try:  # the red-packet grab storm, bench/redpacket_storm.py (bench/ is on sys.path under run.py)
    import redpacket_storm as _redpacket_storm  # noqa: F401
except ModuleNotFoundError as exc:
    if exc.name != "redpacket_storm":
        raise

__all__ = ["REGISTRY", "Context", "NotAvailable", "Target", "run_scenario", "scenario"]
