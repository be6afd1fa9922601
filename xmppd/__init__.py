"""xmppd: an asyncio XMPP server for WeChat-style messaging apps."""

__version__ = "0.1.0"
