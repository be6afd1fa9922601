"""urn:xmppd:cs:0: customer-service routing (客服): queues, agents, relay, transfer, rating.

The feature is ``feature.CustomerService`` (entry point ``cs``); the wire protocol is in
docs/customer-service.md and schemas/cs-0.xsd; ``slixmpp_plugin`` is the client side.
"""
