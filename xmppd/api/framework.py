"""The REST API's framework: operations as data, bearer tokens, JSON errors, validation, OpenAPI.

An :class:`Operation` is one method on one path (``/users/{jid}``) with the JSON Schemas of its
body, query and answer, the scope it needs and the handler that runs it. Resources are lists of
operations; the core registers its own (users, messages) and every feature registers its
resources through ``ctx.add_api(operations)`` (undone at teardown, like every registration).
:class:`ApiRoutes` answers every request under ``/api/v1``:

1. the bearer token of ``api.tokens``: missing or unknown -> 401 ``unauthorized``; a ``read``
   token on anything but GET -> 403 ``forbidden`` (compared in constant time);
2. the path and method -> 404 ``not_found`` / 405 ``method_not_allowed``;
3. the path parameters, query and body against their schemas (JSON Schema 2020-12, the dialect
   of OpenAPI 3.1) -> 400 ``invalid_request`` naming the field; a body that is not JSON -> 400
   ``invalid_json``; over ``api.max_body`` -> 413 ``body_too_large``;
4. the handler: it returns a JSON value (or :class:`Reply` for another status) or raises
   :class:`ApiError` with a stable code; anything else is logged and answered 500
   ``internal_error`` without details.

The same operations make the OpenAPI 3.1 document (:func:`openapi_document`): what is served
is what is routed, and ``docs/openapi.json`` is that document for the default features
(``tests/api/test_openapi.py`` fails when they differ).
"""
from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from jsonschema import Draft202012Validator

from ..jid import JID, JIDError

if TYPE_CHECKING:
    from ..config import ApiOptions

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class ApiError(Exception):
    """An answer other than success: ``status``, a stable ``code`` and a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(code: str, message: str) -> ApiError:
    return ApiError(404, code, message)


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)


async def local_account(text: str, field: str, domain: str, accounts: Any) -> JID:
    """The bare JID of an existing account of ``domain`` that ``text`` names (a username or a
    bare JID) in the request's ``field``: else 400 ``invalid_jid`` or 404 ``user_not_found``.
    ``accounts``: the account store (``get(username, domain)``)."""
    try:
        jid = JID.parse(text if "@" in text else f"{text}@{domain}")
    except JIDError as exc:
        raise bad_request("invalid_jid", f"{field}: {exc}") from None
    if jid.domain != domain or jid.local is None or jid.resource is not None:
        raise bad_request("invalid_jid", f"{field} must be an account of {domain}")
    if await accounts.get(jid.local, domain) is None:
        raise not_found("user_not_found", f"no account {jid}")
    return jid


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer with a status other than the operation's own (e.g. 200 on a replay)."""

    body: Any
    status: int = 200


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """What a handler gets: validated path parameters, query and body, and who asks."""

    params: Mapping[str, str]
    query: Mapping[str, Any]
    body: Any
    headers: Mapping[str, str]
    scope: str
    caller: str  # the token's name, for logs


Handler = Callable[[ApiRequest], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    """One method on one path of the API, described as data.

    ``path`` is relative to ``/api/v1`` with ``{name}`` parameters (one path segment each;
    ``params`` gives their schemas, a string of at most 1023 characters by default). ``query``
    maps names to schemas (integers and booleans are read from the text); ``body`` is the JSON
    Schema of the request body (None: no body); ``response`` the schema of the answer for
    ``status``. ``scope``: ``read`` operations may be called with a read token (only GET may be
    ``read``); ``admin`` needs an admin token. ``errors`` lists the codes it may answer, for
    the document.
    """

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    operation_id: str
    response: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    status: int = 200
    body: Mapping[str, Any] | None = None
    body_required: bool = True  # False: an empty body is allowed (the handler gets None)
    query: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # request headers (e.g. Idempotency-Key)
    required_headers: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()  # statuses beyond 400/401/403 it may answer (404, 409 ...)
    other_responses: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)  # other successes: status -> schema
    description: str = ""
    # True: called by the app's backend with X-Xmppd-Signature (the HMAC-SHA256 of the raw body
    # keyed with webhooks.secret, as on our webhooks) instead of a bearer token.
    signed: bool = False

    @property
    def scope(self) -> str:
        return "read" if self.method == "GET" else "admin"

    def param_names(self) -> list[str]:
        return re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", self.path)


# Schemas shared by resources -------------------------------------------------------------

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
DEFAULT_PARAM: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 1023}
JID_SCHEMA: dict[str, Any] = {
    "type": "string", "minLength": 1, "maxLength": 3071,
    "pattern": "^[^\\u0000-\\u001F\\u007F\\uD800-\\uDFFF\\uFFFE\\uFFFF]+$",
}


def page_query(max_page: int) -> dict[str, dict[str, Any]]:
    """``limit`` (1..``api.max_page``, default the smaller of 50 and that) and ``offset``."""
    return {
        "limit": {"type": "integer", "minimum": 1, "maximum": max_page, "default": min(50, max_page)},
        "offset": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000, "default": 0},
    }


def page_schema(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "limit", "offset"],
        "properties": {
            "items": {"type": "array", "items": item},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "total": {"type": "integer"},
        },
    }


def page(items: list[Any], req: ApiRequest, total: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"items": items, "limit": req.query["limit"], "offset": req.query["offset"]}
    if total is not None:
        out["total"] = total
    return out


def paged(items: list[Any], req: ApiRequest) -> dict[str, Any]:
    """A page of an in-memory list (already in a stable order)."""
    off, lim = req.query["offset"], req.query["limit"]
    return page(items[off : off + lim], req, len(items))


# The routes ---------------------------------------------------------------------------------


class _Compiled:
    __slots__ = ("op", "regex", "body", "query", "params", "headers")

    def __init__(self, op: Operation) -> None:
        self.op = op
        pattern = "".join(
            f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", op.path)
            if part
        )
        self.regex = re.compile(f"\\A{pattern}\\Z")
        self.body = Draft202012Validator(dict(op.body)) if op.body is not None else None
        self.params = {n: Draft202012Validator(dict(op.params.get(n, DEFAULT_PARAM))) for n in op.param_names()}
        self.query = {n: (dict(s), Draft202012Validator(dict(s))) for n, s in op.query.items()}
        self.headers = {n: Draft202012Validator(dict(s)) for n, s in op.headers.items()}


class ApiRoutes:
    """Every operation of the API, and the aiohttp handler that serves them."""

    def __init__(self, options: "ApiOptions", *, signature_key: str = "") -> None:
        self.options = options
        self.signature_key = signature_key  # webhooks.secret: the key of signed operations
        self._tokens = [(t.token.encode(), t.scope, t.name or f"token {i + 1}") for i, t in enumerate(options.tokens)]
        self._ops: dict[tuple[str, str], _Compiled] = {}

    # -- registration
    def add(self, operations: Iterable[Operation]) -> Callable[[], None]:
        """Register operations; returns their removal. Two handlers for one method and path fail."""
        added: list[tuple[str, str]] = []
        for op in operations:
            if op.method not in METHODS:
                raise ValueError(f"API operation {op.operation_id}: unknown method {op.method}")
            if not op.path.startswith("/"):
                raise ValueError(f"API operation {op.operation_id}: the path must start with /")
            key = (op.method, op.path)
            if key in self._ops or any(c.op.operation_id == op.operation_id for c in self._ops.values()):
                for k in added:
                    self._ops.pop(k, None)
                raise ValueError(f"two API operations for {op.method} {op.path} ({op.operation_id})")
            self._ops[key] = _Compiled(op)
            added.append(key)

        def remove() -> None:
            for k in added:
                self._ops.pop(k, None)

        return remove

    def operations(self) -> list[Operation]:
        return sorted((c.op for c in self._ops.values()), key=lambda o: (o.path, METHODS.index(o.method)))

    # -- serving
    def _caller(self, request: web.BaseRequest) -> tuple[str, str]:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "an Authorization: Bearer token of api.tokens is required")
        given = token.strip().encode("utf-8", "replace")
        found: tuple[str, str] | None = None
        for secret, scope, name in self._tokens:  # every token compared: no early exit to time
            if hmac.compare_digest(given, secret):
                found = (scope, name)
        if found is None:
            raise ApiError(401, "unauthorized", "this bearer token is not valid")
        return found

    def _match(self, method: str, path: str) -> tuple[_Compiled, dict[str, str]]:
        allowed = []
        best: tuple[int, _Compiled, dict[str, str]] | None = None
        for (m, _), c in self._ops.items():
            hit = c.regex.match(path)
            if hit is None:
                continue
            if m == method:
                params = hit.groupdict()
                # A fixed segment beats a parameter: /audit/wallets before /{x}/wallets.
                if best is None or len(params) < best[0]:
                    best = (len(params), c, params)
                continue
            allowed.append(m)
        if best is not None:
            return best[1], best[2]
        if allowed:
            raise ApiError(405, "method_not_allowed", f"{method} is not allowed here (allowed: {', '.join(sorted(set(allowed)))})")
        raise ApiError(404, "not_found", "no such API resource")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            path = request.match_info.get("tail", "")
            matched: tuple[_Compiled, dict[str, str]] | ApiError
            try:
                matched = self._match(request.method, "/" + path)
            except ApiError as miss:
                matched = miss
            raw: bytes | None = None
            if not isinstance(matched, ApiError) and matched[0].op.signed:
                raw = await self._signed(request)  # the app's backend, by signature
                scope, caller = "admin", "signed"
            else:
                scope, caller = self._caller(request)  # nothing is told before the token passes
                if isinstance(matched, ApiError):
                    raise matched
            compiled, raw_params = matched
            op = compiled.op
            if op.scope == "admin" and scope != "admin":
                raise ApiError(403, "forbidden", "a read token may only call GET operations")
            params = self._params(compiled, raw_params)
            query = self._query(compiled, request)
            headers = self._headers(compiled, request)
            body = await self._body(compiled, request, raw)
            result = await op.handler(ApiRequest(params, query, body, headers, scope, caller))
        except ApiError as err:
            return error_response(err)
        except Exception:
            log.exception("API %s %s failed", request.method, request.path)
            return error_response(ApiError(500, "internal_error", "the server failed to handle this request; it is logged"))
        if isinstance(result, Reply):
            status, result = result.status, result.body
        else:
            status = op.status
        if op.method != "GET":  # who changed what (never a body: passwords, texts)
            log.info("API %s %s by %s: %d", request.method, request.path, caller, status)
        if status == 204:
            return web.Response(status=204)
        return web.json_response(result, status=status)

    @staticmethod
    def _params(c: _Compiled, raw: dict[str, str]) -> dict[str, str]:
        """aiohttp has percent-decoded the path once (``%40`` is ``@``); it is not decoded
        again (``%2540`` stays ``%40``). A decoded ``/`` separates segments, so no parameter
        holds one."""
        out = {}
        for name, value in raw.items():
            _check(c.params[name], value, f"path parameter {name}")
            out[name] = value
        return out

    @staticmethod
    def _query(c: _Compiled, request: web.BaseRequest) -> dict[str, Any]:
        out: dict[str, Any] = {}
        unknown = set(request.query) - set(c.query)
        if unknown:
            raise bad_request("invalid_request", f"unknown query parameter {sorted(unknown)[0]!r}")
        for name, (schema, validator) in c.query.items():
            values = request.query.getall(name, [])
            if len(values) > 1:
                raise bad_request("invalid_request", f"query parameter {name} is given twice")
            if not values:
                if "default" in schema:
                    out[name] = schema["default"]
                continue
            value: Any = values[0]
            kind = schema.get("type")
            if kind == "integer":
                if not re.fullmatch(r"-?[0-9]{1,19}", value):
                    raise bad_request("invalid_request", f"query parameter {name} must be an integer")
                value = int(value)
            elif kind == "boolean":
                if value not in ("true", "false"):
                    raise bad_request("invalid_request", f"query parameter {name} must be true or false")
                value = value == "true"
            _check(validator, value, f"query parameter {name}")
            out[name] = value
        return out

    @staticmethod
    def _headers(c: _Compiled, request: web.BaseRequest) -> dict[str, str]:
        out = {}
        for name, validator in c.headers.items():
            value = request.headers.get(name)
            if value is None:
                if name in c.op.required_headers:
                    raise bad_request("invalid_request", f"the {name} header is required")
                continue
            _check(validator, value, f"header {name}")
            out[name] = value
        return out

    async def _read(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.options.max_body:
            raise ApiError(413, "body_too_large", f"the body may have at most {self.options.max_body} bytes")
        data = bytearray()
        async for chunk in request.content.iter_chunked(16384):
            data += chunk
            if len(data) > self.options.max_body:
                raise ApiError(413, "body_too_large", f"the body may have at most {self.options.max_body} bytes")
        return bytes(data)

    async def _signed(self, request: web.Request) -> bytes:
        """The raw body of a signed operation, once its X-Xmppd-Signature is checked."""
        from ..webhooks.delivery import SIGNATURE_HEADER, verify

        if not self.signature_key:
            raise ApiError(401, "signature_unavailable", "signed calls need webhooks.secret on this server")
        data = await self._read(request)
        if not verify(self.signature_key, data, request.headers.get(SIGNATURE_HEADER)):
            raise ApiError(401, "bad_signature", f"{SIGNATURE_HEADER} must be sha256=<hex HMAC-SHA256 of the body keyed with webhooks.secret>")
        return data

    async def _body(self, c: _Compiled, request: web.Request, raw: bytes | None = None) -> Any:
        if c.body is None:
            return None
        data = raw if raw is not None else await self._read(request)
        if not data and not c.op.body_required:
            return None
        ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", "the body must be application/json")
        try:
            body = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: "[[[[…" nested too deep
            raise bad_request("invalid_json", "the body is not valid JSON (UTF-8)") from None
        _check(c.body, body, "body")
        return _integral(body)


def _integral(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer: hand handlers an int for it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check(validator: Draft202012Validator, value: Any, what: str) -> None:
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
    if error is None:
        return
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.path)
    message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
    raise bad_request("invalid_request", f"{what}{where}: {message}")


def error_response(err: ApiError) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="xmppd"'} if err.status == 401 else None
    return web.json_response({"error": {"code": err.code, "message": err.message}}, status=err.status, headers=headers)


# OpenAPI -----------------------------------------------------------------------------------

_STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Bad request", 401: "Missing or unknown bearer token",
    403: "Forbidden", 404: "Not found", 409: "Conflict", 413: "Body too large", 415: "Not JSON",
    422: "Refused by a business rule", 503: "Unavailable",
}


def openapi_document(operations: Iterable[Operation], *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (sorted, deterministic)."""
    paths: dict[str, Any] = {}
    tags: set[str] = set()
    for op in sorted(operations, key=lambda o: (o.path, METHODS.index(o.method))):
        tags.add(op.tag)
        parameters = [
            {"name": n, "in": "path", "required": True, "schema": dict(op.params.get(n, DEFAULT_PARAM))}
            for n in op.param_names()
        ]
        parameters += [{"name": n, "in": "query", "required": False, "schema": dict(s)} for n, s in op.query.items()]
        parameters += [
            {"name": n, "in": "header", "required": n in op.required_headers, "schema": dict(s)} for n, s in op.headers.items()
        ]
        responses: dict[str, Any] = {}
        if op.status == 204:
            responses["204"] = {"description": _STATUS_TEXT[204]}
        else:
            responses[str(op.status)] = {
                "description": _STATUS_TEXT.get(op.status, "OK"),
                "content": {"application/json": {"schema": dict(op.response)}},
            }
        for status, schema in sorted(op.other_responses.items()):
            responses[str(status)] = {
                "description": _STATUS_TEXT.get(status, "OK"),
                "content": {"application/json": {"schema": dict(schema)}},
            }
        for status in sorted({400, 401, 403, *op.errors, *((413, 415) if op.body is not None else ())}):
            responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "security": [{"signature": []}] if op.signed else [{"bearer": []}],
            "x-scope": op.scope,
            "responses": responses,
        }
        if op.description:
            entry["description"] = op.description
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {"required": op.body_required, "content": {"application/json": {"schema": dict(op.body)}}}
        paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = entry
    error_statuses = (400, 401, 403, 404, 409, 413, 415, 422, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "xmppd REST API",
            "version": version,
            "description": "The doors of an xmppd server for an app's backend (docs/api.md). Every "
            "operation needs a bearer token of api.tokens (read tokens may only GET), except the app's "
            "signed payment confirmations (X-Xmppd-Signature, docs/webhooks.md).",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in sorted(tags)],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "signature": {
                    "type": "apiKey", "in": "header", "name": "X-Xmppd-Signature",
                    "description": "sha256=<hex HMAC-SHA256 of the raw request body keyed with webhooks.secret> (docs/webhooks.md)",
                },
            },
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": {
                f"E{s}": {
                    "description": _STATUS_TEXT[s],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
                for s in error_statuses
            },
        },
    }


def xml_text(max_length: int, *, min_length: int = 0) -> dict[str, Any]:
    """A string that XML can carry (no control characters but tab and newlines, no surrogates)."""
    return {
        "type": "string",
        "minLength": min_length,
        "maxLength": max_length,
        "pattern": "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uD800-\\uDFFF\\uFFFE\\uFFFF]*$",
    }


def obj(properties: Mapping[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    """A closed object schema (unknown members are refused)."""
    return {"type": "object", "properties": dict(properties), "required": list(required), "additionalProperties": False}


#: HTTP status of each stanza error condition a feature service raises (the code is the
#: condition's name with underscores: ``item_not_found``, ``not_allowed`` ...).
_CONDITION_STATUS = {
    "bad-request": 400, "jid-malformed": 400, "not-acceptable": 400, "policy-violation": 422,
    "item-not-found": 404, "recipient-unavailable": 404, "gone": 404, "conflict": 409,
    "forbidden": 422, "not-allowed": 422, "not-authorized": 422, "registration-required": 422,
    "subscription-required": 422, "resource-constraint": 503, "service-unavailable": 503,
    "feature-not-implemented": 422, "unexpected-request": 409, "internal-server-error": 500,
}


def from_stanza_error(err: Any) -> ApiError:
    """The API's answer for a ``StanzaError`` raised by a feature service (the same refusal
    its XMPP door gives): 400 for malformed input, 404 not found, 409 conflict, 422 refused by
    a rule of the feature, 503 unavailable; the code is the condition (``not_allowed``)."""
    condition = str(getattr(err.condition, "value", err.condition))
    app = getattr(err, "app", None)
    code = condition.replace("-", "_")
    key = getattr(err, "key", None)  # a LocalisedError's catalogue key: error.<what>
    if isinstance(key, str):
        code = f"{code}.{key.removeprefix('error.')}"
    elif app is not None and getattr(app, "tag", None) is not None:
        from lxml import etree

        code = f"{code}.{etree.QName(app).localname.replace('-', '_')}"
    return ApiError(_CONDITION_STATUS.get(condition, 422), code, err.text or condition)
