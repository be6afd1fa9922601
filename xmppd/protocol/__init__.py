"""The sans-I/O protocol core: bytes in, typed events and bytes out. No asyncio, sockets or SQL."""
