"""What analysts read and do: anomalies, alerts, baselines, and the alert
workflow (which runs on the ingest writer, the owner of the baselines)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from uba.domain import paging
from uba.domain.alerts import Alert, AlertStatus, Resolution
from uba.domain.analysis import Analyzer
from uba.domain.anomalies import Anomaly
from uba.domain.errors import InvalidArgument, NotFound
from uba.domain.user_baseline import UserBaseline

MAX_NOTE = 4096


@dataclass(frozen=True, slots=True)
class AnomalyFilter:
    user_id: str = ""
    detector: str = ""
    min_severity: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertFilter:
    user_id: str = ""
    detector: str = ""
    min_severity: int = 0
    status: AlertStatus | None = None


class Reader(Protocol):
    def page_anomalies(
        self,
        limit: int,
        after: list[int] | None,
        *,
        user_id: str,
        detector: str,
        min_severity: int,
        start_time: datetime | None,
        end_time: datetime | None,
    ) -> list[tuple[list[int], Anomaly]]: ...
    def page_alerts(
        self,
        limit: int,
        before_seq: int | None,
        *,
        user_id: str,
        detector: str,
        min_severity: int,
        status: AlertStatus | None,
    ) -> list[Alert]: ...
    def baseline(self, user_id: str) -> dict | None: ...


class Writer(Protocol):
    def run_exclusive(self, action: Callable[[Any], Any]) -> Future: ...


@dataclass(frozen=True, slots=True)
class Page:
    items: list
    next_page_token: str


class InvestigationService:
    def __init__(self, reader: Reader, writer: Writer, analyzer: Analyzer):
        self._reader = reader
        self._writer = writer
        self._analyzer = analyzer

    def anomalies(self, flt: AnomalyFilter, requested_size: int, token: str) -> Page:
        if flt.start_time and flt.end_time and flt.end_time <= flt.start_time:
            raise InvalidArgument.single("end_time", "must be after start_time")
        size = paging.page_size(requested_size)
        key = _filter_key(flt)
        after = paging.decode(token, key, 2)
        rows = self._reader.page_anomalies(
            size + 1,
            after,
            user_id=flt.user_id,
            detector=flt.detector,
            min_severity=flt.min_severity,
            start_time=flt.start_time,
            end_time=flt.end_time,
        )
        next_token = paging.encode(rows[size - 1][0], key) if len(rows) > size else ""
        return Page([a for _, a in rows[:size]], next_token)

    def alerts(self, flt: AlertFilter, requested_size: int, token: str) -> Page:
        """Alerts, most recently changed first (by seq)."""
        size = paging.page_size(requested_size)
        key = _filter_key(flt)
        after = paging.decode(token, key, 1)
        rows = self._reader.page_alerts(
            size + 1,
            after[0] if after else None,
            user_id=flt.user_id,
            detector=flt.detector,
            min_severity=flt.min_severity,
            status=flt.status,
        )
        next_token = paging.encode([rows[size - 1].seq], key) if len(rows) > size else ""
        return Page(rows[:size], next_token)

    def baseline(self, user_id: str) -> UserBaseline:
        if not user_id:
            raise InvalidArgument.single("user_id", "required")
        data = self._reader.baseline(user_id)
        if data is None:
            raise NotFound(f"no baseline for user {user_id[:64]!r}: no events seen")
        return UserBaseline.from_dict(data)

    def acknowledge(self, alert_id: str, who: str, note: str) -> Future:
        _check_note(note)
        return self._writer.run_exclusive(
            lambda uow: self._analyzer.acknowledge(uow, alert_id, who, note)
        )

    def resolve(
        self,
        alert_id: str,
        resolution: Resolution | None,
        who: str,
        note: str,
        suppress_for: timedelta | None,
    ) -> Future:
        _check_note(note)
        return self._writer.run_exclusive(
            lambda uow: self._analyzer.resolve(uow, alert_id, resolution, who, note, suppress_for)
        )


def _check_note(note: str) -> None:
    if len(note) > MAX_NOTE:
        raise InvalidArgument.single("note", f"longer than {MAX_NOTE} characters")


def _filter_key(flt: Any) -> dict:
    key = asdict(flt)
    if isinstance(key.get("status"), AlertStatus):
        key["status"] = key["status"].value
    return key
