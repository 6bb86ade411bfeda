"""Graceful shutdown: refuse new calls while the calls in flight finish."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc


class DrainInterceptor(grpc.aio.ServerInterceptor):
    """During shutdown, refuses new calls with UNAVAILABLE (which clients
    retry) while in-flight ones finish. Health checks still answer, so load
    balancers can see NOT_SERVING."""

    def __init__(self) -> None:
        self.draining = False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if self.draining and not handler_call_details.method.startswith("/grpc.health."):
            return _refuse_handler()
        return await continuation(handler_call_details)


def _refuse_handler() -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry")

    # Requests of any method are accepted as raw bytes: nothing to parse.
    return grpc.unary_unary_rpc_method_handler(refuse)
