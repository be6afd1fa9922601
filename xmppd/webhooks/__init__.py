"""Webhooks: the transactional outbox (outbox.py), delivery (delivery.py), event names (events.py)."""
