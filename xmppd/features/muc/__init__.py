"""XEP-0045: Multi-User Chat, as a package of small parts (service, room, occupants, affiliations,
configuration form, history, MUC/Sub subscriptions, repository, room events for extensions)."""
