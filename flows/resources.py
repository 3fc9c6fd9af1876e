"""What a stage holds while it runs: a slot of a Prefect global concurrency limit (one per GPU, or one
of the CPU's training slots) and, on a GPU node, the devices it may see.

* ``gpu``: one slot per GPU; a training stage occupies ``experiment.gpus`` of them. Created with the
  node's device count when missing; on a cluster create one per node and name it in each node's
  worker environment (``ITPN_GPU_LIMIT=gpu-node7``), so a node never takes more jobs than GPUs.
* ``cpu-training``: one slot per training stage on CPU, ``experiment.cpu_jobs`` of them (the
  parameters file sets it: a run brings the limit to its ``cpu_jobs``).

A GPU limit that exists already is used as it is (``prefect gcl create gpu --limit 8`` wins). The
limits bound every flow run that uses them, so parallel fine-tunes, several experiments of a sweep
and several workers on one server share them (Prefect: "Global concurrency limits",
https://docs.prefect.io/v3/how-to-guides/workflows/global-concurrency-limits).

Which GPUs a stage sees is decided on its node: ``device_lease`` locks free device ids with
``flock`` in ``<state dir>/gpu-locks`` and hands them out as ``CUDA_VISIBLE_DEVICES``; a lock dies
with its process, so a killed stage frees its GPUs.
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.utilities.asyncutils import run_coro_as_sync

from .outline import DISTRIBUTED_STAGES
from .params import PipelineParams

CPU_LIMIT = "cpu-training"


def gpu_limit_name() -> str:
    """The GPU limit of this node: ``ITPN_GPU_LIMIT`` or ``gpu``."""
    return os.environ.get("ITPN_GPU_LIMIT", "gpu")


def uses_gpu(params: PipelineParams) -> bool:
    return params.experiment.device.startswith("cuda")


def stage_slots(stage: str, params: PipelineParams) -> tuple[str, int, int] | None:
    """(limit name, slots the stage occupies, slots of the limit: when created, and always on CPU), or
    None for a stage that takes no training slot (data preparation, the benchmark)."""
    if stage not in DISTRIBUTED_STAGES:
        return None
    if uses_gpu(params):
        import torch

        gpus = max(1, params.experiment.gpus)
        return gpu_limit_name(), gpus, max(torch.cuda.device_count(), gpus)
    return CPU_LIMIT, 1, params.experiment.cpu_jobs


async def _ensure_limit(name: str, slots: int, force: bool) -> int:
    async with get_client() as client:
        try:
            limit = await client.read_global_concurrency_limit_by_name(name)
            if force and limit.limit != slots:
                await client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=slots))
                return slots
            return limit.limit
        except ObjectNotFound:
            pass
        try:
            await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
        except ObjectAlreadyExists:  # another stage created it first
            pass
        return (await client.read_global_concurrency_limit_by_name(name)).limit


def ensure_limit(name: str, slots: int, force: bool = False) -> int:
    """Create the global concurrency limit ``name`` with ``slots`` slots unless it exists (``force``: set an
    existing one to ``slots`` too); returns its slots."""
    return run_coro_as_sync(_ensure_limit(name, slots, force))


async def _reset_slots(names: list[str]) -> list[str]:
    reset = []
    async with get_client() as client:
        for name in names:
            try:
                limit = await client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                continue
            if limit.active_slots:
                await client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))
                reset.append(name)
    return reset


def reset_slots() -> list[str]:
    """Free every slot of the training limits; returns the limits that had some taken.

    Only for Prefect's temporary server (``itpn run``), where no other flow run can hold one: a run
    killed mid-stage leaves its slot taken in the database, and the temporary server that granted
    its lease is gone with it, so nothing would free it. A real server frees a dead run's slots
    itself when their lease (300 s, renewed while the stage runs) expires."""
    return run_coro_as_sync(_reset_slots([CPU_LIMIT, gpu_limit_name()]))


@contextmanager
def device_lease(count: int, total: int, lock_dir: Path, poll_s: float = 2.0) -> Iterator[list[int]]:
    """Hold ``count`` of this node's ``total`` device ids (waiting until that many are free)."""
    if count > total:
        raise ValueError(f"a stage needs {count} GPUs but this node has {total}: lower experiment.gpus")
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        held: list[tuple[int, IO[str]]] = []
        try:
            for device in range(total):
                handle = (lock_dir / f"gpu{device}.lock").open("a")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another stage holds it
                    handle.close()
                    continue
                held.append((device, handle))
                if len(held) == count:
                    yield [device for device, _ in held]
                    return
        finally:
            for _, handle in held:
                handle.close()  # closing the file releases its lock
        time.sleep(poll_s)


@contextmanager
def stage_resources(stage: str, params: PipelineParams) -> Iterator[dict[str, str]]:
    """Hold the stage's concurrency slots (and GPUs); yields the environment the stage runs with."""
    slots = stage_slots(stage, params)
    if slots is None:
        yield {}
        return
    name, occupy, create_with = slots
    ensure_limit(name, create_with, force=not uses_gpu(params))
    with concurrency(name, occupy=occupy, strict=True):
        if not uses_gpu(params):
            yield {}
            return
        import torch

        from services.settings import state_dir

        with device_lease(occupy, torch.cuda.device_count(), state_dir(create=True) / "gpu-locks") as devices:
            yield {"CUDA_VISIBLE_DEVICES": ",".join(map(str, devices))}
