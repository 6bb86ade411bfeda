"""The one interceptor that decides who may call what.

Every RPC of the service, unary and streaming, passes here before its
handler runs: the bearer token of `authorization: Bearer <key>` must belong
to an active key (else UNAUTHENTICATED) holding the method's scope (else
PERMISSION_DENIED), within the key's request rate and stream count (else
RESOURCE_EXHAUSTED with RetryInfo); denied calls count against the rate
too. A client address that fails to authenticate too often is refused
(RESOURCE_EXHAUSTED) before any lookup, unless its key is a known active
one. Health checking and reflection stay open. The key's name becomes the
principal of the call (`current_principal`), which the alert workflow
records as who acted. Open streams re-check their key once per key-cache
period and end with UNAUTHENTICATED once it is revoked or expired.

A grpc.aio call context belongs to its call: once the call has ended (the
client cancelled, closed its channel or dropped the connection), asking it
for its peer reaches into a call gRPC has released, which can crash the
process (docs/security.md). So everything a call's audit and
bookkeeping need is read from the context when the call is admitted (a
CallRecord), and nothing here touches the context after the handler has
started, except to abort a call that is still running.

Sits after DrainInterceptor and before ErrorInterceptor, so it maps its own
refusals with `to_status`. Tokens never reach a log or the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import Executor
from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf import text_format
from google.protobuf.message import Message

from uba import observability
from uba.api.calls import CallRecord, current_call
from uba.api.errors import StreamBehavior, UnaryBehavior, to_status
from uba.domain import errors
from uba.domain import security as sec

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
# Set for the duration of one call by the interceptor; read by the servicer.
current_principal: ContextVar[str] = ContextVar("uba_principal", default=ANONYMOUS)
# The header by which the bundled gateway proves it is the hop that wrote
# x-forwarded-for (Envoy sets it, replacing any a caller sent).
GATEWAY_HEADER = "x-uba-gateway"


def _refusal(exc: errors.DomainError) -> str:
    """The metrics' reason for a refused call (a fixed set)."""
    if isinstance(exc, errors.Unauthenticated):
        return "unauthenticated"
    if isinstance(exc, errors.PermissionDenied):
        return "permission_denied"
    if isinstance(exc, errors.ResourceExhausted):
        return "rate_limited"
    return "unavailable"


def _describe(request: object) -> tuple[str, str]:
    """Target and detail of an audited call, from its request (no secrets in
    requests: keys travel in metadata)."""
    target = getattr(request, "alert_id", "") or getattr(request, "incident_id", "") or ""
    # Not a message when the request did not parse (uba.api.decoding.Undecodable).
    detail = (
        text_format.MessageToString(request, as_one_line=True)
        if isinstance(request, Message)
        else ""
    )
    return target, detail[:500]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: sec.Authenticator,
        audit: Callable[[sec.AuditEvent], None],
        executor: Executor,
        rate: sec.RateLimiter,
        streams: sec.StreamLimiter,
        failures: sec.FailureLimiter,
        *,
        gateway_token: str = "",
        trusted_proxies: tuple[sec.Network, ...] = (),
        recheck_seconds: float = 10.0,
    ):
        self._auth = authenticator
        self._audit = audit
        self._executor = executor
        self._rate = rate
        self._streams = streams
        self._failures = failures
        self._gateway_token = gateway_token
        self._trusted_proxies = trusted_proxies
        self._recheck = max(recheck_seconds, 0.5)
        self._refusals = sec.AuditThrottle()  # client -> refusals over the failure budget
        self._denials = sec.AuditThrottle()  # (key, method) -> PERMISSION_DENIED

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        scope = sec.required_scope(method)
        if handler is None or scope is None:
            return handler
        metadata = {
            k: v for k, v in (handler_call_details.invocation_metadata or ()) if isinstance(v, str)
        }
        token = sec.bearer_token(metadata.get("authorization"))
        name = method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            return handler._replace(
                unary_unary=self._unary(name, scope, token, metadata, handler.unary_unary)
            )
        if handler.unary_stream is not None:
            return handler._replace(
                unary_stream=self._stream(name, scope, token, metadata, handler.unary_stream)
            )
        # No client-streaming methods exist; refuse rather than pass unchecked.
        return grpc.unary_unary_rpc_method_handler(self._refuse)

    @staticmethod
    async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "method not allowed")

    def _origin(
        self, context: grpc.aio.ServicerContext, metadata: dict[str, str]
    ) -> sec.CallOrigin:
        """Read once, as the call is admitted (see the module docstring)."""
        sent = metadata.get(GATEWAY_HEADER, "")
        from_gateway = bool(self._gateway_token and sent) and hmac.compare_digest(
            sent, self._gateway_token
        )
        return sec.CallOrigin.of(
            context.peer() or "",
            metadata.get("x-forwarded-for", ""),
            from_gateway,
            self._trusted_proxies,
        )

    async def _admit(self, call: CallRecord, scope: str, token: str) -> sec.ApiKey:
        """The caller's key, or raises a domain error (audited)."""
        name, origin = call.method, call.origin
        try:
            found = self._auth.cached(token)
            if found is sec.MISS:
                if not self._auth.is_active(token):
                    self._check_failures(call)
                found = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._auth.verify, token
                )
        except errors.Unauthenticated as exc:
            self._check_failures(call)
            self._failures.failed(origin.client)
            self._audit(
                sec.AuditEvent(name, "UNAUTHENTICATED", peer=origin.describe(), detail=str(exc))
            )
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
            # A denied call costs its key like any other, so a key cannot
            # probe methods (or fill the audit) faster than its limit.
            self._rate.acquire(key.key_id)
            left_out = self._denials.admit(f"{key.key_id} {name}")
            if left_out is not None:
                detail = str(exc) + (
                    f" ({left_out} more denials since the last entry)" if left_out else ""
                )
                self._audit(
                    sec.AuditEvent(
                        name,
                        "PERMISSION_DENIED",
                        actor=key.name,
                        key_id=key.key_id,
                        peer=origin.describe(),
                        detail=detail,
                    )
                )
            raise
        self._rate.acquire(key.key_id)
        return key

    def _check_failures(self, call: CallRecord) -> None:
        """Refuses a client past its failed-authentication budget; audits
        that once a minute per client, not once per attempt."""
        try:
            self._failures.check(call.origin.client)
        except errors.ResourceExhausted as exc:
            left_out = self._refusals.admit(call.origin.client)
            if left_out is not None:
                detail = str(exc) + (
                    f" ({left_out} more refusals since the last entry)" if left_out else ""
                )
                self._audit(
                    sec.AuditEvent(
                        call.method,
                        "RESOURCE_EXHAUSTED",
                        peer=call.origin.describe(),
                        detail=detail,
                    )
                )
            raise

    def _record(self, call: CallRecord, key: sec.ApiKey, request: object) -> None:
        target, detail = _describe(request)
        self._audit(
            sec.AuditEvent(
                call.method,
                call.outcome,
                actor=key.name,
                key_id=key.key_id,
                target=target,
                peer=call.origin.describe(),
                detail=detail,
            )
        )

    def _unary(
        self, name: str, scope: str, token: str, metadata: dict[str, str], behavior: UnaryBehavior
    ) -> UnaryBehavior:
        audited = name in sec.AUDITED_METHODS

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = CallRecord(name, self._origin(context, metadata))
            call_reset = current_call.set(call)
            try:
                try:
                    key = await self._admit(call, scope, token)
                except errors.DomainError as exc:
                    observability.recorder.refused(name, _refusal(exc))
                    await context.abort_with_status(to_status(exc))
                reset = current_principal.set(key.name)
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    call.failed(exc)
                    raise
                finally:
                    current_principal.reset(reset)
                    if audited:
                        self._record(call, key, request)
            finally:
                current_call.reset(call_reset)

        return handler

    def _stream(
        self, name: str, scope: str, token: str, metadata: dict[str, str], behavior: StreamBehavior
    ) -> StreamBehavior:
        audited = name in sec.AUDITED_METHODS

        async def handler(
            request: Any, context: grpc.aio.ServicerContext
        ) -> AsyncGenerator[Any, None]:
            call = CallRecord(name, self._origin(context, metadata))
            current_call.set(call)
            try:
                key = await self._admit(call, scope, token)
            except errors.DomainError as exc:
                observability.recorder.refused(name, _refusal(exc))
                await context.abort_with_status(to_status(exc))
            try:
                self._streams.open(key.key_id)
            except errors.DomainError as exc:
                observability.recorder.refused(name, "too_many_streams")
                await context.abort_with_status(to_status(exc))
            reset = current_principal.set(key.name)
            try:
                async for message in self._while_key_valid(token, behavior(request, context)):
                    yield message
            except errors.Unauthenticated as exc:  # the key was revoked or expired meanwhile
                status = to_status(exc)
                call.ended_with(status.code.name)
                await context.abort_with_status(status)
            except BaseException as exc:
                call.failed(exc)
                raise
            finally:
                self._streams.close(key.key_id)
                with contextlib.suppress(ValueError):  # closed from another context
                    current_principal.reset(reset)
                if audited:
                    self._record(call, key, request)

        return handler

    async def _while_key_valid(
        self, token: str, messages: AsyncGenerator[Any, None]
    ) -> AsyncGenerator[Any, None]:
        """The stream's messages, for as long as its key stays valid: checked
        again once per key-cache period, so that a revoked key's open streams
        end within about that time (raises Unauthenticated)."""
        loop = asyncio.get_running_loop()
        iterator = messages  # an async generator is its own iterator
        pending: asyncio.Future | None = None
        next_check = loop.time() + self._recheck
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(iterator.__anext__())
                done, _ = await asyncio.wait((pending,), timeout=max(next_check - loop.time(), 0.0))
                if done:
                    try:
                        message = pending.result()
                    except StopAsyncIteration:
                        return
                    finally:
                        pending = None
                    yield message
                if loop.time() >= next_check:
                    try:
                        await loop.run_in_executor(self._executor, self._auth.verify, token)
                    except errors.Unauthenticated:
                        raise
                    except Exception:  # noqa: BLE001 - the database is down: check again next period
                        log.warning("cannot re-check the API key of an open stream", exc_info=True)
                    next_check = loop.time() + self._recheck
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            with contextlib.suppress(BaseException):
                await iterator.aclose()
