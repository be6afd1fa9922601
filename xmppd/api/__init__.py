"""The REST API for the app's backend (``/api/v1`` on ``listen.http``; docs/api.md).

``framework`` holds what every resource shares (operations as data, tokens, errors, validation,
the OpenAPI document); each resource is one module listing its operations. The core's own
resources (users, messages) are registered by the server; a feature's resources are registered
by the feature in ``setup()`` with ``self.ctx.add_api(operations(self))``, through the same
services its XMPP side uses.

Adding a resource: write ``operations(...) -> list[Operation]`` (see ``users.py`` or
``roster.py``), give every operation a unique ``operation_id``, the JSON Schema of its body,
query and answer, and raise ``ApiError(status, "stable_code", "text")`` for refusals; then run
``python -m xmppd.api.openapi > docs/openapi.json`` and document it in docs/api.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .framework import ApiError, ApiRequest, Operation, Reply

if TYPE_CHECKING:
    from ..app import Server

__all__ = ["ApiError", "ApiRequest", "Operation", "Reply", "core_operations"]


def core_operations(server: "Server") -> list[Operation]:
    """The resources of the core itself: accounts and their sessions, messages."""
    from . import messages, users, webhooks

    return [*users.operations(server), *messages.operations(server), *webhooks.operations(server)]
