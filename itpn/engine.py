"""The training engine pre-training (``itpn.pretrain``) and ImageNet fine-tuning (``itpn.finetune``) share.

* **Checkpoints** (``Checkpoint``): ``<output_url>/checkpoint.pt``, written atomically by rank 0
  (a temporary file, then a rename) with the run's settings, global batch and resolved schedule
  beside the trainer's own state, stamped with the trainer's format (``CheckpointFormat``); older
  formats are read through their upgrades.
* **One resume rule** (``CheckpointFormat.differences``): a run continues a checkpoint only when every
  setting equals the checkpoint's, except those its trainer names as free (where and how the run
  goes, not what it trains), the resolved schedule is the same and so is the global batch
  (``batch_size x accum_steps x processes``: the data order is laid out by it). Otherwise the error
  names the file, each setting with both values, and the fix.
* **The data order** (``epoch_loader``): this process's micro-batches of an epoch from any update on,
  a function of the seed and the position (``itpn.data.order``), so a resumed run sees what an
  uninterrupted one would have.
* **The curve log** (``CurveLog``): one JSON object per line, each with its ``step``; a resumed run
  keeps the lines up to its checkpoint's step.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

import fsspec
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from itpn.data.order import EpochSampler
from itpn.files import is_local, join_url, remove_leftovers, write_atomically
from itpn.runtime import Runtime

CHECKPOINT_NAME = "checkpoint.pt"

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as JSON gives them back (tuples become lists), so saved and current settings compare."""
    return json.loads(json.dumps(dict(values)))


@dataclass(frozen=True)
class CheckpointFormat:
    """What one trainer's checkpoints are.

    ``name`` is stamped into every checkpoint it writes (e.g. ``itpn-pretrain/2``); ``kind`` names the
    trainer in messages; ``free`` lists the settings a resumed run may change (every other one must
    equal the checkpoint's); ``older`` maps each earlier format still read (``None``: written before
    checkpoints carried a format) to the function bringing such a state to this format's layout.
    """

    name: str
    kind: str
    free: frozenset[str]
    older: Mapping[Optional[str], Upgrade] = field(default_factory=dict)

    def upgrade(self, url: str, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` (read from ``url``) in this format's layout; ``ValueError`` when it is no checkpoint
        of this trainer."""
        written = state.get("format")
        if written == self.name:
            return state
        if written in self.older:
            return self.older[written](state)
        raise ValueError(f"{url} is not an itpn {self.kind} checkpoint (format {written!r}): point output_url "
                         f"elsewhere, or resume=False to overwrite it")

    def differences(self, state: Mapping[str, Any], settings: Mapping[str, Any], global_batch: int,
                    schedule: Mapping[str, Any]) -> list[str]:
        """Each way a run with ``settings``, ``global_batch`` and resolved ``schedule`` differs from the one
        that wrote ``state`` (upgraded), as ``name=saved there, current here``; empty when it may continue it.
        Settings the checkpoint does not hold (added since) are left to the format's upgrade."""
        saved, current = plain(state["config"]), plain(settings)
        found = [f"{key}={saved[key]!r} there, {current[key]!r} here" for key in current
                 if key not in self.free and key in saved and saved[key] != current[key]]
        found += [f"{key}={value!r} there, {schedule.get(key)!r} here (the resolved schedule)"
                  for key, value in state.get("schedule", {}).items() if value != schedule.get(key)]
        if state["global_batch"] != global_batch:
            found.append(f"global batch {state['global_batch']} there, {global_batch} here (batch_size x "
                         f"accum_steps x processes; the data order would not continue)")
        return found


class Checkpoint:
    """``<output_url>/checkpoint.pt`` of one run in ``format``.

    ``settings`` (the config's ``to_dict()``), ``global_batch`` and ``schedule`` (what the settings
    resolved to: steps, warm-up, peak lr ...) describe the run; ``save`` writes them beside the
    trainer's state and ``load`` refuses a checkpoint written by a run they differ from.
    """

    def __init__(self, output_url: str, format: CheckpointFormat, runtime: Runtime, settings: Mapping[str, Any],
                 global_batch: int, schedule: Mapping[str, Any]):
        self.url = join_url(output_url, CHECKPOINT_NAME)
        self.format = format
        self.runtime = runtime
        self.settings = plain(settings)
        self.global_batch = global_batch
        self.schedule = dict(schedule)

    def exists(self) -> bool:
        """Whether the run folder holds a checkpoint."""
        filesystem, path = fsspec.core.url_to_fs(self.url)
        return filesystem.exists(path)

    def save(self, state: Mapping[str, Any]) -> None:
        """Write ``state`` (tensors, numbers, strings, lists and dicts of them) on rank 0, atomically: a run
        killed while writing leaves the previous checkpoint whole. Every rank calls this."""
        if not self.runtime.is_main:
            return
        buffer = io.BytesIO()
        torch.save({"format": self.format.name, "config": self.settings, "global_batch": self.global_batch,
                    "schedule": self.schedule, **state}, buffer)
        write_atomically(self.url, buffer.getvalue())

    def load(self) -> Optional[dict[str, Any]]:
        """The checkpoint's state (on the CPU, in this format's layout), or ``None`` when there is none.

        Raises ``ValueError`` naming the file, every setting that differs with both values, and the fix,
        when this run may not continue it (``CheckpointFormat.differences``)."""
        filesystem, path = fsspec.core.url_to_fs(self.url)
        if self.runtime.is_main and is_local(filesystem):
            remove_leftovers(path)  # of a run killed while it wrote a checkpoint
        if not self.exists():
            return None
        with fsspec.open(self.url, "rb") as handle:
            state = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
        state = self.format.upgrade(self.url, state)
        found = self.format.differences(state, self.settings, self.global_batch, self.schedule)
        if found:
            raise ValueError(f"cannot resume from {self.url}: it was written by a run with other settings: "
                             f"{'; '.join(found)}. Keep those settings to continue it, or start another run "
                             f"(another output_url, or resume=False to overwrite this one)")
        return state


def epoch_loader(dataset: Dataset, batch_size: int, accum_steps: int, runtime: Runtime, seed: int, epoch: int,
                 start_update: int, num_workers: int, collate_fn: Optional[Callable] = None) -> DataLoader:
    """This process's micro-batches of ``epoch`` from update ``start_update`` on, ``batch_size`` samples
    each, ``accum_steps`` per update; ``dataset`` is indexed by ``(index, seed)`` (``SeededSamples``, or
    any dataset so indexed) as ``EpochSampler`` lays the epoch out."""
    sampler = EpochSampler(len(dataset), batch_size, accum_steps, runtime.rank, runtime.world_size, seed, epoch,
                           start_update)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_fn, pin_memory=runtime.device.type == "cuda", drop_last=True,
                      persistent_workers=False)


def data_parallel(model: nn.Module, runtime: Runtime) -> nn.Module:
    """``model`` under DDP when the run has several processes, else ``model`` itself."""
    if not runtime.distributed:
        return model
    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


class CurveLog:
    """A training curve at ``url`` as JSON lines, one object per row, each with an integer ``step``.

    ``resume_step`` ``None`` starts the curve afresh; a number keeps the rows up to that step (a
    resumed run drops what was written after its checkpoint), less the rows of that very step that
    ``after_checkpoint`` says were written after the checkpoint was (an OpenMMLab run validates after it
    saves). Written in place on a local disk; for object storage a local copy is appended to and
    ``publish`` uploads it (call it at checkpoints and at the end). Only rank 0 should hold one.
    """

    def __init__(self, url: str, resume_step: Optional[int],
                 after_checkpoint: Optional[Callable[[Mapping[str, Any]], bool]] = None):
        self.url = url
        filesystem, path = fsspec.core.url_to_fs(url)
        self.local = is_local(filesystem)
        self.path = path if self.local else os.path.join(tempfile.mkdtemp(prefix="itpn-curve-"),
                                                         os.path.basename(path))
        kept = []
        if resume_step is not None and filesystem.exists(path):
            with filesystem.open(path, "rt") as handle:  # a line a kill cut short has no newline: dropped
                rows = [(line, json.loads(line)) for line in handle if line.strip() and line.endswith("\n")]
            kept = [line for line, row in rows if row["step"] < resume_step or (
                row["step"] == resume_step and not (after_checkpoint and after_checkpoint(row)))]
        # atomically: a kill while the kept rows are written back must not lose them
        write_atomically(self.path, "".join(kept).encode())

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append ``rows`` (JSON-serialisable mappings, each with its ``step``), one line each."""
        with open(self.path, "a") as handle:
            handle.writelines(json.dumps(dict(row)) + "\n" for row in rows)

    def publish(self) -> None:
        """Upload the local copy (atomically) when the curve lives in object storage; nothing on a local disk."""
        if not self.local:
            with open(self.path, "rb") as handle:
                write_atomically(self.url, handle.read())
