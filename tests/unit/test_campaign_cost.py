"""The work of one ingest group must not grow with the campaign it joins.

A campaign incident (password spraying, credential stuffing) gains a signal
per victim and stays open while the attack goes on, so it can hold
thousands. Each group used to rescore it once per joining member and to
read and write each victim's risk with a statement of its own: the
store's fill rate fell from 1,133 to 238 events/s between 100,000 and
333,000 events (docs/operations.md). These tests count the work itself
(signals read by the scoring, statements on the risk table), not time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event as sa_event

from uba.app import build_services
from uba.config import Settings
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.incidents import EntityKind, Incident, IncidentPolicy

USERS = 300
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


def round_of(r: int) -> list[ActivityEvent]:
    """bench/observability.py's store-filling load: five logins per user
    from new addresses, a tenth of the users failing (the same tenth of
    each address's users: a spray), forty seconds later each round."""
    return [
        ActivityEvent(
            event_id=f"e{r}-{u}-{i}",
            user_id=f"u{u}",
            type=ActivityType.LOGIN_FAILURE if (u + r) % 10 == 0 else ActivityType.LOGIN_SUCCESS,
            occurred_at=T0 + timedelta(seconds=3 * i + 40 * r),
            source_ip=f"10.{u % 250}.{i}.{r}",
        )
        for u in range(USERS)
        for i in range(5)
    ]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Three rounds build a campaign; the fourth is one group, measured."""
    services = build_services(Settings(data_dir=str(tmp_path_factory.mktemp("campaign"))))
    try:
        commit = services.ingest._commit
        for r in range(3):
            commit.commit(round_of(r), datetime.now(UTC))
        reads: list[int] = []
        statements: list[str] = []
        combined = IncidentPolicy.combined

        def counting(self, signals):
            signals = list(signals)
            reads.append(len(signals))
            return combined(self, signals)

        def record(conn, cursor, statement, parameters, context, executemany):
            statements.append(" ".join(statement.split()))

        sa_event.listen(services.database.engine, "before_cursor_execute", record)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(IncidentPolicy, "combined", counting)
            done = commit.commit(round_of(3), datetime.now(UTC))
        sa_event.remove(services.database.engine, "before_cursor_execute", record)
        yield done, services.analyzer.last_anomaly_count, reads, statements
    finally:
        services.close()


def campaign_of(done) -> Incident:
    (campaign,) = [
        c for c in done.changed if getattr(c, "entity_kind", None) is EntityKind.SOURCE_IP
    ]
    return campaign


def test_the_group_joins_a_campaign_of_many_victims(measured):
    done, anomalies, _, _ = measured
    campaign = campaign_of(done)
    # The premise of the two tests below: a large campaign, many joining.
    assert len(campaign.signals) >= 100
    assert anomalies >= 3 * len(campaign.signals)


def test_each_incident_is_scored_once_per_group_not_once_per_member(measured):
    done, anomalies, reads, _ = measured
    size = len(campaign_of(done).signals)
    # Its rescore and its risk contribution read each signal once; a
    # member that opens an incident of its own reads that one's few.
    # (Rescoring per member read about `anomalies` x `size` signals.)
    assert sum(reads) <= 2 * size + anomalies, (sum(reads), size, anomalies)


def test_the_victims_risk_is_read_and_written_in_a_statement_each(measured):
    done, _, _, statements = measured
    victims = len({s.user_id for s in campaign_of(done).signals})
    risk_table = ("FROM user_risk", "INTO user_risk", "UPDATE user_risk")
    on_risk = [s for s in statements if any(t in s for t in risk_table)]
    # A read per 500 users (SQLite's bound on parameters), one upsert of all.
    assert len(on_risk) <= 2 + victims // 500, on_risk[:5]
    suppressions = [s for s in statements if "FROM suppressions" in s]
    alert_keys = [s for s in statements if s.startswith("SELECT alerts.") and "detector =" in s]
    assert len(suppressions) == len(alert_keys)  # one look-up per (user, detector)
