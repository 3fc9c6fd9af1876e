"""``<stage folder>/run``, the library's own files of a stage (checkpoints, logs, exports): kept for a run
of the same cache key, so a killed run resumes from its checkpoint; cleared when the key changed."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from itpn.files import write_atomically


def claim_run_directory(run_dir: Path, key: str, fresh: bool = False, *, rank: int | None = None,
                        launch: str | None = None, wait_s: float = 600.0) -> None:
    """Keep ``run_dir`` for a run with the same key (a killed run resumes from its checkpoint);
    clear it when the inputs or code changed (or ``fresh``), so no run resumes a stale one.

    Under ``torchrun`` rank 0 decides and marks the directory with the launch's id
    (``TORCHELASTIC_RUN_ID``); the other ranks wait for that mark, so none of them reads a
    checkpoint rank 0 is about to clear."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    launch = os.environ.get("TORCHELASTIC_RUN_ID", "") if launch is None else launch
    marker, claimed = run_dir / ".stage_key", run_dir / ".launch"
    if rank != 0:
        deadline = time.monotonic() + wait_s
        while launch and not (claimed.exists() and claimed.read_text() == launch):
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank {rank} waited {wait_s:.0f} s for rank 0 to claim {run_dir} (launch "
                                   f"{launch}); is rank 0 running, and is {run_dir} on a file system all ranks see?")
            time.sleep(0.2)
        return
    if run_dir.exists() and (fresh or not marker.exists() or marker.read_text() != key):
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(str(marker), key.encode())  # a kill mid-write must not leave a key that is no key
    write_atomically(str(claimed), launch.encode())
