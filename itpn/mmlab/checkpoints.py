"""OpenMMLab checkpoints that a kill cannot tear: ``AtomicCheckpointRunner`` writes them atomically, and
``resume_point`` picks the one a killed run continues from.

mmengine (0.10, ``Runner.save_checkpoint`` -> ``mmengine.runner.checkpoint.save_checkpoint``) writes a
checkpoint with the file backend's ``put``, which opens ``iter_N.pth`` and writes into it: a run killed
while writing leaves a truncated ``iter_N.pth``, the newest by its name, which the next run tries to
load. Its ``CheckpointHook`` then rewrites ``<work_dir>/last_checkpoint`` in place
(``_save_checkpoint_with_step``): a kill there leaves it empty, and mmengine's own auto-resume
(``find_latest_checkpoint``) then resumes from ``''``. Ours, so that neither happens:

* ``AtomicCheckpointRunner`` (a ``Runner`` registered in mmengine's ``RUNNERS``) lets mmengine write each
  checkpoint under a temporary name in the same folder, then flushes it to the disk and renames it
  over ``iter_N.pth`` (``itpn.files.replace_atomically``): every ``iter_N.pth`` / ``epoch_N.pth`` is whole.
* ``resume_point`` never reads the pointer: the newest whole checkpoint is the one with the highest
  number; it writes the pointer back, atomically, naming that checkpoint, for mmengine's tools.
"""
from __future__ import annotations

import os
import re
from typing import Any, Optional

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from itpn.files import replace_atomically, temporary_path, write_atomically

POINTER = "last_checkpoint"  # mmengine's name for the file naming the newest checkpoint
CHECKPOINT_NAME = re.compile(r"(?:iter|epoch)_(\d+)\.pth")  # CheckpointHook's default filename_tmpl
LEFTOVER = re.compile(r"\.(?:iter|epoch)_\d+\.pth\.\d+\.tmp")  # itpn.files.temporary_path of one


@RUNNERS.register_module()
class AtomicCheckpointRunner(Runner):
    """mmengine's ``Runner`` whose checkpoints on a local disk are written atomically (a kill while one is
    written leaves the previous checkpoint the newest whole one); elsewhere (``s3://`` ...) a put of one
    object is atomic already and mmengine's write is used as it is."""

    def save_checkpoint(self, out_dir: str, filename: str, *args: Any, **kwargs: Any) -> None:
        """``Runner.save_checkpoint`` into a temporary file beside ``<out_dir>/<filename>``, then renamed over
        it (rank 0 alone writes, as in mmengine: ``save_checkpoint`` is ``master_only``)."""
        if "://" in out_dir or self.rank != 0:
            super().save_checkpoint(out_dir, filename, *args, **kwargs)
            return
        path = os.path.join(out_dir, filename)
        temporary = temporary_path(path)
        super().save_checkpoint(out_dir, os.path.basename(temporary), *args, **kwargs)
        replace_atomically(temporary, path)


def checkpoints(work_dir: str) -> list[str]:
    """The checkpoints (``iter_N.pth`` / ``epoch_N.pth``) in ``work_dir``, oldest (lowest N) first."""
    if not os.path.isdir(work_dir):
        return []
    found = [(int(match.group(1)), name) for name in os.listdir(work_dir)
             if (match := CHECKPOINT_NAME.fullmatch(name))]
    return [os.path.join(work_dir, name) for _, name in sorted(found)]


def resume_point(work_dir: str) -> Optional[str]:
    """The checkpoint a run in ``work_dir`` continues from: the newest (highest N), or ``None`` when there
    is none. ``<work_dir>/last_checkpoint`` is written back to name it (atomically), and the temporary files
    of a run killed while it wrote one are removed."""
    for name in os.listdir(work_dir) if os.path.isdir(work_dir) else []:
        if LEFTOVER.fullmatch(name):
            os.remove(os.path.join(work_dir, name))
    found = checkpoints(work_dir)
    if not found:
        return None
    write_atomically(os.path.join(work_dir, POINTER), found[-1].encode())
    return found[-1]
