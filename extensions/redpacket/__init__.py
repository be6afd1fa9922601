"""Red packets (红包) with a wallet ledger: the ``urn:xmppd:redpacket:0`` extension."""
