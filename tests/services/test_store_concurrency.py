"""Several writer processes on one store: every row lands, nobody sees "database is locked"; processes
re-recording the same run at once leave one run holding exactly its newest attempt's rows."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from itpn.records import MetricRecord
from services.store import open_reader, open_writer
from services.store.models import Metric, Run

PROCESSES = 4
INSERTS = 50
T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def write_rows(url: str, worker: int) -> None:
    # Each process migrates (racing the others on a fresh store), then records its run INSERTS times, each
    # attempt one row longer, in as many transactions, so the writers interleave as much as they can.
    with open_writer(url) as writer:
        for step in range(INSERTS):
            writer.record_run("concurrency", f"worker-{worker}", started_at=T0 + timedelta(seconds=step),
                              finished_at=T0 + timedelta(seconds=step + 1), params={"worker": worker},
                              metrics=[MetricRecord("pretrain", "in1k", "train", "loss", 1.0 / (done + 1), done)
                                       for done in range(step + 1)])


def run_processes(target: object, arguments: list[tuple[object, ...]]) -> None:
    """Start one spawned process per argument tuple, wait for all, require that each exited 0."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=args) for args in arguments]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * len(processes)


def test_parallel_writer_processes(store_url: str) -> None:
    run_processes(write_rows, [(store_url, worker) for worker in range(PROCESSES)])

    with open_reader(store_url) as reader:
        with reader.engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(Metric)) == PROCESSES * INSERTS
            assert connection.scalar(select(func.count()).select_from(Run)) == PROCESSES
        runs = reader.runs()
    assert set(runs["status"]) == {"completed"}
    assert sorted(runs["run_key"]) == [f"worker-{worker}" for worker in range(PROCESSES)]


RECORDERS = 2
REPEATS = 20


def attempt_rows(attempt: int) -> list[MetricRecord]:
    # attempts write 1, 2 or 3 rows, so stale rows of an earlier attempt would outlive a later one
    return [MetricRecord("classification", "in1k", "val", f"top{k}", float(attempt), 0, "m", "baseline")
            for k in range(1, attempt % 3 + 2)]


def rerecord(url: str, recorder: int, barrier: object) -> None:
    # The recorders take turns in start time (recorder r runs attempts r, r + RECORDERS, ...) and write
    # at the same moments, so their transactions on the one run overlap.
    with open_writer(url) as writer:
        barrier.wait()
        for attempt in range(recorder, RECORDERS * REPEATS, RECORDERS):
            writer.record_run("concurrency", "same-run", started_at=T0 + timedelta(seconds=attempt),
                              finished_at=T0 + timedelta(seconds=attempt + 1), metrics=attempt_rows(attempt))


def test_processes_rerecording_one_run_leave_one_run_with_its_newest_rows(store_url: str) -> None:
    with open_writer(store_url) as writer:  # an earlier attempt with more rows than any later one
        writer.record_run("concurrency", "same-run", started_at=T0 - timedelta(hours=1), finished_at=T0,
                          metrics=[MetricRecord("classification", "in1k", "val", f"top{k}", -1.0, 0, "m", "baseline")
                                   for k in range(1, 6)])
    barrier = multiprocessing.get_context("spawn").Barrier(RECORDERS)
    run_processes(rerecord, [(store_url, recorder, barrier) for recorder in range(RECORDERS)])

    with open_reader(store_url) as reader:
        runs = reader.runs()
        metrics = reader.metrics()
    newest = RECORDERS * REPEATS - 1
    assert len(runs) == 1 and runs.iloc[0]["status"] == "completed"
    assert runs.iloc[0]["attempts"] == 1 + RECORDERS * REPEATS
    assert runs.iloc[0]["started_at"] == T0 + timedelta(seconds=newest)
    assert sorted(metrics["name"]) == [f"top{k}" for k in range(1, newest % 3 + 2)]
    assert set(metrics["value"]) == {float(newest)}
