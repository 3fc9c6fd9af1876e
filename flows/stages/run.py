"""``run_stage``: one stage in this process, unless its result is current."""
from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from ..params import PipelineParams
from .bodies import STAGES
from .cache import stage_key
from .result import StageResult, hardware
from .run_folder import claim_run_directory


def run_stage(stage: str, params: PipelineParams, force: bool = False, fresh: bool = False) -> StageResult:
    """Run ``stage`` unless its ``result.json`` holds the same key (``force``: run anyway); returns the
    (new or cached) result. A run folder left by a run of the same key is resumed unless ``fresh``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; the stages are: {', '.join(STAGES)}")
    stage_dir = params.stage_dir(stage)
    key = stage_key(stage, params)
    previous = stage_dir / "result.json"
    if not force and previous.exists():
        cached = StageResult.read(previous)
        if cached.key == key:
            return cached
    if previous.exists() and int(os.environ.get("RANK", "0")) == 0 and StageResult.read(previous).key != key:
        # it describes the run folder about to be cleared: kept, a return to its parameters after this run
        # failed or was killed would take it as current and find its files gone
        previous.unlink()
    claim_run_directory(params.run_dir(stage), key, fresh=fresh)
    started_at, start = datetime.now(UTC), time.perf_counter()
    result = STAGES[stage](params)
    result.key, result.seconds, result.hardware = key, time.perf_counter() - start, hardware()
    result.started_at, result.finished_at = started_at.isoformat(), datetime.now(UTC).isoformat()
    if int(os.environ.get("RANK", "0")) == 0:
        result.write(stage_dir)
    return result
