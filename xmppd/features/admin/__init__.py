"""XEP-0133: Service Administration (admin commands and the message of the day)."""
from .feature import ADMIN, Admin, node
from .repository import MemoryMotdRepository, Motd, MotdRepository, SqlMotdRepository

__all__ = ["ADMIN", "Admin", "MemoryMotdRepository", "Motd", "MotdRepository", "SqlMotdRepository", "node"]
