"""The alert broker and stream, in-process: hand-over from replay to live
without gap or duplicate, slow subscribers cut off at a bounded backlog,
shutdown ends streams with a status that tells where to resume."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from uba.api.alert_stream import AlertStream
from uba.api.broker import AlertBroker, AlertSubscriptionFilter
from uba.domain.alerts import Alert
from uba.domain.anomalies import Severity
from uba.domain.errors import ResourceExhausted, Unavailable

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def alert(seq: int, user: str = "u", severity: Severity = Severity.MEDIUM) -> Alert:
    return Alert(
        alert_id=f"a{seq}",
        user_id=user,
        detector="d",
        severity=severity,
        title="t",
        reason="r",
        created_at=NOW,
        updated_at=NOW,
        first_seen_at=NOW,
        last_seen_at=NOW,
        seq=seq,
    )


class FakeStore:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def after(self, seq: int, limit: int) -> list[Alert]:
        return [a for a in self.alerts if a.seq > seq][:limit]

    def max_seq(self) -> int:
        return max((a.seq for a in self.alerts), default=0)


async def collect(stream: AlertStream, flt, after: int, count: int) -> list[int]:
    seqs = []
    async for kind, _item, seq in stream.follow(flt, after):
        if kind == "alert":
            seqs.append(seq)
            if len(seqs) == count:
                return seqs
    return seqs


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_replay_then_live_without_gap_or_duplicate():
    async def main():
        store = FakeStore()
        store.alerts = [alert(s) for s in range(1, 6)]
        with ThreadPoolExecutor(2) as pool:
            broker = AlertBroker(store.after, store.max_seq, pool, poll_interval=0.05)
            await broker.start()
            stream = AlertStream(broker, store.after, pool, heartbeat_interval=5)
            task = asyncio.create_task(collect(stream, AlertSubscriptionFilter(), 2, 6))
            await asyncio.sleep(0.1)
            store.alerts += [alert(s) for s in range(6, 10)]
            broker.poke_threadsafe()
            seqs = await task
            await broker.close()
            return seqs

    assert run(main()) == [3, 4, 5, 6, 7, 8]


def test_filters_apply_to_replay_and_live():
    async def main():
        store = FakeStore()
        store.alerts = [alert(1, "a"), alert(2, "b", Severity.HIGH), alert(3, "b")]
        with ThreadPoolExecutor(2) as pool:
            broker = AlertBroker(store.after, store.max_seq, pool, poll_interval=0.05)
            await broker.start()
            stream = AlertStream(broker, store.after, pool, heartbeat_interval=5)
            flt = AlertSubscriptionFilter(min_severity=int(Severity.HIGH), user_id="b")
            task = asyncio.create_task(collect(stream, flt, 1, 2))
            await asyncio.sleep(0.1)
            store.alerts += [
                alert(4, "b"),
                alert(5, "a", Severity.CRITICAL),
                alert(6, "b", Severity.CRITICAL),
            ]
            broker.poke_threadsafe()
            seqs = await task
            await broker.close()
            return seqs

    assert run(main()) == [2, 6]


def test_slow_subscriber_is_cut_off_at_its_backlog():
    async def main():
        store = FakeStore()
        with ThreadPoolExecutor(2) as pool:
            broker = AlertBroker(store.after, store.max_seq, pool, poll_interval=0.05, backlog=5)
            await broker.start()
            stream = AlertStream(broker, store.after, pool, heartbeat_interval=5)
            follow = stream.follow(AlertSubscriptionFilter(), 0)
            assert (await follow.__anext__())[0] == "heartbeat"  # subscribed; now it stops reading
            store.alerts = [alert(s) for s in range(1, 50)]
            broker.poke_threadsafe()
            await asyncio.sleep(0.2)
            with pytest.raises(ResourceExhausted) as info:
                while True:
                    await follow.__anext__()
            await broker.close()
            return info.value, broker.subscriber_count

    error, left = run(main())
    assert "too slow" in str(error) and "after_seq=" in str(error)
    assert left == 0  # unsubscribed: its memory is released


def test_shutdown_ends_streams_with_unavailable_and_the_resume_point():
    async def main():
        store = FakeStore()
        store.alerts = [alert(1)]
        with ThreadPoolExecutor(2) as pool:
            broker = AlertBroker(store.after, store.max_seq, pool, poll_interval=0.05)
            await broker.start()
            stream = AlertStream(broker, store.after, pool, heartbeat_interval=5)
            follow = stream.follow(AlertSubscriptionFilter(), 0)
            await follow.__anext__()
            await broker.close()
            with pytest.raises(Unavailable) as info:
                await follow.__anext__()
            return str(info.value)

    assert "after_seq=1" in run(main())


class CountingStore(FakeStore):
    """Counts reads; a read can be made slow, to overlap a commit's hand-over."""

    def __init__(self, read_delay: float = 0.0) -> None:
        super().__init__()
        self.reads = 0
        self.read_delay = read_delay

    def after(self, seq: int, limit: int) -> list[Alert]:
        self.reads += 1
        import time

        time.sleep(self.read_delay)
        return super().after(seq, limit)


async def drain(sub, count: int) -> list[int]:
    return [(await asyncio.wait_for(sub.queue.get(), 2)).seq for _ in range(count)]


async def hand_over(stored: list[Alert], handed: list, count: int) -> tuple[list[int], int]:
    """A broker with nothing delivered yet, storage holding `stored`, and a
    commit handing over `handed`: the seqs a subscriber gets, and how often
    storage was read (polling is off)."""
    store = CountingStore()
    with ThreadPoolExecutor(2) as pool:
        broker = AlertBroker(store.after, store.max_seq, pool, poll_interval=60)
        await broker.start()
        sub = broker.subscribe(AlertSubscriptionFilter())
        store.alerts = stored
        broker.poke_threadsafe(handed)
        seqs = await drain(sub, count)
        await broker.close()
        return seqs, store.reads


def test_a_commit_that_continues_the_seqs_is_delivered_without_reading_storage():
    assert run(hand_over([alert(1), alert(2)], [alert(1), alert(2)], 2)) == ([1, 2], 0)


def test_a_gap_in_the_seqs_is_filled_from_storage_in_order():
    # 1 was committed by another process
    seqs, reads = run(hand_over([alert(1), alert(2), alert(3)], [alert(2), alert(3)], 3))
    assert seqs == [1, 2, 3] and reads >= 1


def test_a_hand_over_during_a_read_is_not_delivered_twice():
    async def main():
        store = CountingStore(read_delay=0.3)
        with ThreadPoolExecutor(2) as pool:
            broker = AlertBroker(store.after, store.max_seq, pool, poll_interval=60)
            await broker.start()
            sub = broker.subscribe(AlertSubscriptionFilter())
            store.alerts = [alert(1), alert(2)]
            broker.poke_threadsafe(["not an alert"])  # falls back to a (slow) read
            await asyncio.sleep(0.1)
            broker.poke_threadsafe([alert(1), alert(2)])  # handed over while the read runs
            await asyncio.sleep(0.5)
            store.alerts.append(alert(3))
            broker.poke_threadsafe([alert(3)])
            seqs = await drain(sub, 3)
            left = sub.queue.qsize()
            await broker.close()
            return seqs, left

    assert run(main()) == ([1, 2, 3], 0)


def test_published_changes_of_other_processes_are_delivered_in_order_once():
    """A front end of the event log learns of changes from the fan-out:
    the next seq goes out at once, one already delivered is dropped, and
    anything after a gap (a lost message, a message naming only its seq)
    is read from storage, in order (polling is off)."""

    async def main():
        store = CountingStore()
        with ThreadPoolExecutor(2) as pool:
            broker = AlertBroker(store.after, store.max_seq, pool, poll_interval=3600)
            await broker.start()
            sub = broker.subscribe(AlertSubscriptionFilter())
            store.alerts = [alert(s) for s in range(1, 4)]
            for s in (1, 2, 2, 1):  # the repeats: a late or echoed message
                broker.learned(alert(s))
            first = await drain(sub, 2)
            reads_in_order = store.reads
            store.alerts += [alert(s) for s in range(4, 7)]
            broker.learned(alert(5))  # 3 and 4 were lost; 6 is committed too
            gap = await drain(sub, 4)
            broker.learned(alert(4))  # arrives late: delivered already
            store.alerts.append(alert(7))
            broker.learned(7)  # came without its content
            last = await drain(sub, 1)
            await asyncio.sleep(0.05)
            left = sub.queue.qsize()
            await broker.close()
            return first, reads_in_order, gap, last, left

    first, reads, gap, last, left = run(main())
    assert first == [1, 2] and reads == 0
    assert gap == [3, 4, 5, 6]
    assert last == [7] and left == 0
