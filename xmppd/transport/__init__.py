"""The thin asyncio edge: TCP, TLS and WebSocket transports feeding the protocol core."""
