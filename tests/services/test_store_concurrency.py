"""Several writer processes on one store: every row lands, nobody sees "database is locked"."""

from __future__ import annotations

import multiprocessing

from sqlalchemy import func, select

from services.store import MetricRow, open_reader, open_writer
from services.store.models import Metric, Run

PROCESSES = 4
INSERTS = 50


def write_rows(url: str, worker: int) -> None:
    # Each process migrates (racing the others on a fresh store), then writes one run and
    # INSERTS single-row transactions, so the writers interleave as much as they can.
    with open_writer(url) as writer, writer.run("concurrency", f"worker-{worker}", params={"worker": worker}) as run_id:
        for step in range(INSERTS):
            writer.add_metrics(run_id, [MetricRow("pretrain", "in1k", "train", "loss", 1.0 / (step + 1), step)])


def test_parallel_writer_processes(store_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=write_rows, args=(store_url, worker)) for worker in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * PROCESSES

    with open_reader(store_url) as reader:
        with reader.engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(Metric)) == PROCESSES * INSERTS
            assert connection.scalar(select(func.count()).select_from(Run)) == PROCESSES
        runs = reader.runs()
    assert set(runs["status"]) == {"completed"}
    assert sorted(runs["run_key"]) == [f"worker-{worker}" for worker in range(PROCESSES)]
