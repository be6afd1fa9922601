"""XML layer: the sans-I/O stream parser (``parser``); payloads, builder and schemas join later.

Importing this package has no side effects and pulls in nothing beyond what its modules need.
"""
