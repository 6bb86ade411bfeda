"""One seeded scenario, two deployments, the same findings (issue #22,
docs/scaling.md): an embedded `uba serve`, and a front end with two
workers of the event log (4 partitions, shared between the workers), each
on a PostgreSQL database of its own, are sent the same events in the same
order. Both must store the same anomalies (detector, user, events,
severity, reason) and the same alerts.

The scenario is one where the other workers' users matter: the user
detectors consult who else uses an address, a country, an endpoint or a
kind of device (uba.domain.peers), and here the peers are on the other
worker's partitions:
- a sales team of three works from France and calls an administrative
  endpoint every day, all on worker 0; their two colleagues are on worker 1.
  One of those logs in from France (a new country "lowered: 3 peers work
  from FR"), the other calls the endpoint ("common in peer group" rather
  than a privileged endpoint nobody uses, HIGH);
- a laptop refresh: three engineers (two on worker 0, one on worker 1) log
  in from new devices of a new kind; the fourth, on worker 1, is then part
  of an organisation-wide change and not reported;
- a newcomer to engineering logs in at night: judged by the peer group's
  prior, pooled from the six engineers' baselines, three matured on each
  worker (a group's prior is used from five users on).
Besides, a few plain attacks (a login at 3 am, a failed-login burst,
impossible travel), controls (a country and a privileged endpoint nobody
uses), and a password spray over every account (the population detectors,
on the population partitions in the log).

Order: the history is sent, then each later event after the log settled
(both streams drained, and every worker has been sent every aggregate
entry), so that what a worker knows of the others when it judges an event
does not depend on timing; the embedded server has committed each call
before it answers.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from support.eventlog import (
    NatsServer,
    WorkerProcess,
    kill_and_show,
    log_settled,
    require_nats,
    wait_until_split,
)
from support.postgres import query
from support.scenario import peer_scenario, send
from support.server import ServerProcess
from support.waiting import wait_for

from uba.eventlog.layout import partition_of

PARTITIONS = 4
LEASE = 5.0


def findings(database_url: str) -> list[tuple]:
    return sorted(
        query(
            database_url,
            "SELECT detector, user_id, severity, event_ids, reason FROM anomalies",
        )
    )


def alerts(database_url: str) -> list[tuple]:
    return sorted(
        query(
            database_url,
            "SELECT detector, user_id, severity, status, anomaly_count, first_seen_at_us, "
            "last_seen_at_us, reason FROM alerts",
        )
    )


def difference(embedded: list[tuple], log: list[tuple]) -> str:
    only_embedded = sorted(set(embedded) - set(log))
    only_log = sorted(set(log) - set(embedded))
    return "\n".join(
        ["only embedded:", *map(str, only_embedded), "only through the log:", *map(str, only_log)]
    )


def test_a_scenario_gives_the_same_findings_embedded_and_through_the_log(
    tmp_path, make_database_url
):
    require_nats()
    embedded_url = make_database_url("postgresql")
    log_url = make_database_url("postgresql")
    nats = NatsServer(tmp_path / "nats").start()
    # Both without scheduled training: the Isolation Forest scores with no
    # model in either (a front end's model would not reach the workers).
    common = ["--train-interval", "0"]
    embedded = ServerProcess(tmp_path / "embedded", embedded_url, extra_args=common, anonymous=True)
    front = ServerProcess(
        tmp_path / "front",
        log_url,
        extra_args=[
            *common,
            "--event-log",
            nats.url,
            "--event-log-partitions",
            str(PARTITIONS),
        ],
        anonymous=True,
    )
    workers = [
        WorkerProcess(tmp_path / f"w{i}", log_url, nats.url, "--worker-lease-seconds", str(LEASE))
        for i in (1, 2)
    ]
    processes = [embedded, front, *workers]
    try:
        # The front end migrates its database and creates the streams
        # before the workers start (alongside the embedded server).
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(p.start, timeout=90) for p in (embedded, front)]:
                started.result()
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(w.start, timeout=90) for w in workers]:
                started.result()

        wait_until_split(workers, PARTITIONS)
        owners = [w.owned() for w in workers]

        def worker_of(user_id: str) -> int:
            return 0 if partition_of(user_id, PARTITIONS) in owners[0] else 1

        people, phases = peer_scenario(worker_of)
        sent = 0
        for i, phase in enumerate(phases):
            send(embedded.stub, phase)
            send(front.stub, phase)
            sent += len(phase)
            wait_for(
                lambda: query(log_url, "SELECT count(*) FROM events")[0][0] == sent,  # noqa: B023
                120,
                f"the workers to store {sent} events",
            )
            wait_for(lambda: log_settled(nats.url, len(workers)), 60, "the log to settle")
            if i == 0:
                # After the history, the Berlin colleagues' worker starts
                # anew: it knows the others' aggregates only from the log.
                assert workers[1].stop(timeout=60) == 0
                workers[1].start(timeout=90)
                wait_until_split(workers, PARTITIONS)
        assert query(embedded_url, "SELECT count(*) FROM events")[0][0] == sent
        # The premise: the French sales team and their Berlin colleagues
        # were on different workers (whichever kept which partitions).
        france = {partition_of(people[f"sales-fr-{k}"].user_id, PARTITIONS) for k in range(3)}
        berlin = {partition_of(people[f"sales-de-{k}"].user_id, PARTITIONS) for k in range(2)}
        assert any(france <= w.owned() and not berlin & w.owned() for w in workers), [
            w.owned() for w in workers
        ]

        embedded_findings = findings(embedded_url)
        print("===== findings (detector, user, severity, events, reason)")
        print(*embedded_findings, sep="\n")
        # The scenario exercises what it is about (in the embedded server,
        # which sees everyone): peers on the other worker lower a country
        # and an endpoint, and the refresh hides the fourth new device.
        by = {(f[0], f[1]): f for f in embedded_findings}
        user = {name: p.user_id for name, p in people.items()}
        country = by["new_country", user["sales-de-0"]]
        assert country[2] == 1 and "lowered: 3 peers work from FR" in country[4], country
        endpoint = by["api_new_endpoint", user["sales-de-1"]]
        assert endpoint[2] == 1 and "common in peer group (3 users" in endpoint[4], endpoint
        assert ("new_device", user["eng-3"]) not in by, embedded_findings
        assert ("new_device", user["eng-2"]) in by
        assert by["api_new_endpoint", user["eng-4"]][2] == 3  # HIGH: nobody else uses it
        # The newcomer is judged by the engineers' prior, three of whom
        # matured on each worker: pooled from both through the log.
        newcomer = by["login_time", user["eng-new"]]
        assert "judged mostly against peer group engineering" in newcomer[4], newcomer
        for detector in (
            "login_time",
            "failed_login_burst",
            "impossible_travel",
            "password_spraying",
        ):
            assert any(f[0] == detector for f in embedded_findings), detector

        log_findings = findings(log_url)
        assert log_findings == embedded_findings, difference(embedded_findings, log_findings)
        embedded_alerts, log_alerts = alerts(embedded_url), alerts(log_url)
        assert log_alerts == embedded_alerts, difference(embedded_alerts, log_alerts)
        assert embedded_alerts
        # The worker started anew read the others' aggregates from the log
        # before it took partitions.
        replayed = re.search(r"aggregates: read (\d+) messages", workers[1].log())
        assert replayed and int(replayed.group(1)) > 0, workers[1].log()
        # Both workers save the one pool of priors they share; nobody
        # writes the row of one process.
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(lambda w: w.stop(timeout=60), workers)) == [0, 0]
        names = {r[0] for r in query(log_url, "SELECT name FROM state")}
        assert "priors.eventlog" in names and "priors" not in names, names
    finally:
        kill_and_show(processes)
        nats.stop()
