"""The one interceptor that decides who may call what.

Every RPC of the service, unary and streaming, passes here before its
handler runs: the bearer token of `authorization: Bearer <key>` must belong
to an active key (else UNAUTHENTICATED) holding the method's scope (else
PERMISSION_DENIED), within the key's request rate and stream count (else
RESOURCE_EXHAUSTED with RetryInfo). A client address that fails to
authenticate too often is refused (RESOURCE_EXHAUSTED) before any lookup. Health checking and reflection stay
open. The key's name becomes the principal of the call (`current_principal`),
which the alert workflow records as who acted.

Sits after DrainInterceptor and before ErrorInterceptor, so it maps its own
refusals with `to_status`. Tokens never reach a log or the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from contextvars import ContextVar

import grpc
from google.protobuf import text_format
from google.protobuf.message import Message

from uba.api.errors import to_status
from uba.domain import errors
from uba.domain import security as sec

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
# Set for the duration of one call by the interceptor; read by the servicer.
current_principal: ContextVar[str] = ContextVar("uba_principal", default=ANONYMOUS)


def _peer(context: grpc.aio.ServicerContext, metadata: dict[str, str]) -> str:
    peer = context.peer() or ""
    forwarded = metadata.get("x-forwarded-for", "")
    # Through the gateway the peer is Envoy; keep who Envoy says it served.
    return f"{peer} xff={forwarded[:64]}" if forwarded else peer


def _client(context: grpc.aio.ServicerContext, metadata: dict[str, str]) -> str:
    """Who is calling, for the failed-authentication budget: the peer's
    address without its port and, through the gateway, the address Envoy
    appended to x-forwarded-for (the last one: Envoy's own, not the caller's
    claims)."""
    peer = context.peer() or ""
    host = peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
    forwarded = metadata.get("x-forwarded-for", "").rsplit(",", 1)[-1].strip()
    return f"{host}|{forwarded[:64]}" if forwarded else host


def _describe(request) -> tuple[str, str]:
    """Target and detail of an audited call, from its request (no secrets in
    requests: keys travel in metadata)."""
    target = getattr(request, "alert_id", "") or ""
    # Not a message when the request did not parse (uba.api.errors.Undecodable).
    detail = text_format.MessageToString(request, as_one_line=True) if isinstance(request, Message) else ""
    return target, detail[:500]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: sec.Authenticator, audit: Callable[[sec.AuditEvent], None],
                 executor: Executor, rate: sec.RateLimiter, streams: sec.StreamLimiter,
                 failures: sec.FailureLimiter):
        self._auth = authenticator
        self._audit = audit
        self._executor = executor
        self._rate = rate
        self._streams = streams
        self._failures = failures
        self._refusals_noted: dict[str, float] = {}  # client -> when its refusal was last audited

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        scope = sec.required_scope(method)
        if handler is None or scope is None:
            return handler
        metadata = {k: v for k, v in (handler_call_details.invocation_metadata or ()) if isinstance(v, str)}
        token = sec.bearer_token(metadata.get("authorization"))
        name = method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(name, scope, token, metadata, handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(name, scope, token, metadata, handler.unary_stream))
        # No client-streaming methods exist; refuse rather than pass unchecked.
        return grpc.unary_unary_rpc_method_handler(self._refuse)

    @staticmethod
    async def _refuse(request, context):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "method not allowed")

    async def _admit(self, name: str, scope: str, token: str, metadata: dict[str, str],
                     context: grpc.aio.ServicerContext) -> sec.ApiKey:
        """The caller's key, or raises a domain error (audited)."""
        client = _client(context, metadata)
        try:
            found = self._auth.cached(token)
            if found is sec.MISS:
                self._check_failures(name, client, context, metadata)
                found = await asyncio.get_running_loop().run_in_executor(self._executor, self._auth.verify, token)
        except errors.Unauthenticated as exc:
            self._check_failures(name, client, context, metadata)
            self._failures.failed(client)
            self._audit(sec.AuditEvent(name, "UNAUTHENTICATED", peer=_peer(context, metadata), detail=str(exc)))
            raise
        except errors.DomainError:
            raise
        except Exception:  # the database is down: say so, without the token
            log.warning("cannot verify an API key for %s", name, exc_info=True)
            raise errors.Unavailable("cannot verify the API key right now; retry") from None
        key: sec.ApiKey = found  # type: ignore[assignment]
        try:
            self._auth.authorize(key, scope)
        except errors.PermissionDenied as exc:
            self._audit(sec.AuditEvent(name, "PERMISSION_DENIED", actor=key.name, key_id=key.key_id,
                                       peer=_peer(context, metadata), detail=str(exc)))
            raise
        self._rate.acquire(key.key_id)
        return key

    def _check_failures(self, name: str, client: str, context, metadata: dict[str, str]) -> None:
        """Refuses a client past its failed-authentication budget; audits
        that once a minute per client, not once per attempt."""
        try:
            self._failures.check(client)
        except errors.ResourceExhausted as exc:
            now = time.monotonic()
            if now - self._refusals_noted.get(client, -60.0) >= 60.0:
                if len(self._refusals_noted) >= 10_000:
                    self._refusals_noted.clear()
                self._refusals_noted[client] = now
                self._audit(sec.AuditEvent(name, "RESOURCE_EXHAUSTED", peer=_peer(context, metadata),
                                           detail=str(exc)))
            raise

    def _record(self, name: str, key: sec.ApiKey, request, context, metadata: dict[str, str], outcome: str) -> None:
        target, detail = _describe(request)
        self._audit(sec.AuditEvent(name, outcome, actor=key.name, key_id=key.key_id, target=target,
                                   peer=_peer(context, metadata), detail=detail))

    @staticmethod
    def _outcome(context) -> str:
        code = context.code()
        return getattr(code, "name", None) or "ERROR"

    def _unary(self, name, scope, token, metadata, behavior):
        audited = name in sec.AUDITED_METHODS

        async def handler(request, context):
            try:
                key = await self._admit(name, scope, token, metadata, context)
            except errors.DomainError as exc:
                await context.abort_with_status(to_status(exc))
            reset = current_principal.set(key.name)
            outcome = "ok"
            try:
                return await behavior(request, context)
            except BaseException:
                outcome = self._outcome(context)
                raise
            finally:
                current_principal.reset(reset)
                if audited:
                    self._record(name, key, request, context, metadata, outcome)

        return handler

    def _stream(self, name, scope, token, metadata, behavior):
        audited = name in sec.AUDITED_METHODS

        async def handler(request, context):
            try:
                key = await self._admit(name, scope, token, metadata, context)
                self._streams.open(key.key_id)
            except errors.DomainError as exc:
                await context.abort_with_status(to_status(exc))
            reset = current_principal.set(key.name)
            outcome = "ok"
            try:
                async for message in behavior(request, context):
                    yield message
            except BaseException:
                outcome = self._outcome(context)
                raise
            finally:
                self._streams.close(key.key_id)
                with contextlib.suppress(ValueError):  # closed from another context
                    current_principal.reset(reset)
                if audited:
                    self._record(name, key, request, context, metadata, outcome)

        return handler
