"""What the server knows about a call in progress, read when it is admitted.

A grpc.aio call context must not be asked anything once its call has ended
(see uba.api.auth): the interceptors capture where the call came from when
they admit it, and note how it ended here, for the audit trail.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass

from uba.domain.security import CallOrigin

OK = "ok"
CANCELLED = "CANCELLED"


@dataclass(slots=True)
class CallRecord:
    method: str  # the RPC's short name, e.g. "ExportLogs"
    origin: CallOrigin
    outcome: str = OK  # "ok", or the name of the status code the call ended with

    def ended_with(self, code_name: str) -> None:
        """The status the error mapping answered with (first one wins)."""
        if self.outcome == OK:
            self.outcome = code_name

    def failed(self, exc: BaseException) -> None:
        """How the call ended, from what its handler raised, unless the
        error mapping already said."""
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            self.ended_with(CANCELLED)
        else:
            self.ended_with("ERROR")


# The record of the call being handled (None outside calls, or without auth).
current_call: ContextVar[CallRecord | None] = ContextVar("uba_call", default=None)


def note_status(code_name: str) -> None:
    """Notes on the current call's record the status it is answered with."""
    call = current_call.get()
    if call is not None:
        call.ended_with(code_name)
