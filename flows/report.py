"""A stage's results in the Prefect UI: one markdown artifact per stage and experiment (its metric
table, when it ran, links to its curves and to the dashboard), so the UI shows results without
opening the store (Prefect: "Artifacts", https://docs.prefect.io/v3/concepts/artifacts)."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from prefect.artifacts import create_markdown_artifact

from services import settings

from .params import PipelineParams
from .stages.result import StageResult

MAX_ROWS = 40  # the final metrics; curves are linked, not tabulated


def artifact_key(experiment: str, stage: str) -> str:
    """Prefect artifact keys hold lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", f"{experiment}-{stage}".lower()).strip("-")


def _link(url: str) -> str:
    return url if "://" in url else f"file://{quote(url)}"


def stage_markdown(params: PipelineParams, stage: str, result: StageResult, recorded: dict[str, Any]) -> str:
    """The artifact's text: headline, metric table (``MAX_ROWS`` at most), benchmark table, links."""
    experiment = params.record_name(stage)
    lines = [f"## {stage} · experiment `{experiment}`", "",
             f"Store run {recorded.get('run_id')} ({recorded.get('status')}); ran {result.started_at or '?'} → "
             f"{result.finished_at or '?'} ({result.seconds:.1f} s); key `{result.key}`.", ""]
    if result.metrics:
        lines += ["| task | dataset | split | metric | variant | value |", "|---|---|---|---|---|---|"]
        lines += [f"| {m['task']} | {m['dataset']} | {m['split']} | {m['name']} | {m.get('variant') or ''} | "
                  f"{m['value']:.4g} |" for m in result.metrics[:MAX_ROWS]]
        if len(result.metrics) > MAX_ROWS:
            lines.append(f"\n{len(result.metrics) - MAX_ROWS} more rows in the store.")
        lines.append("")
    if result.benchmarks:
        lines += ["| model | variant | resolution | img/s | GFLOPs |", "|---|---|---|---|---|"]
        lines += [f"| {b['model']} | {b['variant']} | {b['resolution']} | {b['images_per_s']:.1f} | "
                  f"{b.get('gflops') or 0:.2f} |" for b in result.benchmarks[:MAX_ROWS]]
        lines.append("")
    lines += [f"- note: {note}" for note in result.notes[:10]]
    curves = params.stage_dir(stage) / "curves.csv"
    if result.curves and curves.exists():
        lines.append(f"- curves: [{curves.name}]({_link(str(curves))})")
    for name, url in result.outputs.items():
        if url:
            lines.append(f"- {name}: [{url.rsplit('/', 1)[-1]}]({_link(url)})")
    lines.append(f"- dashboard: [{experiment}]({settings.dashboard_url()}/?experiment={quote(experiment)})")
    return "\n".join(lines)


def publish_stage(params: PipelineParams, stage: str, result: StageResult, recorded: dict[str, Any]) -> str:
    """Create the stage's markdown artifact (a new version under the same key each time); returns its key."""
    experiment = params.record_name(stage)
    key = artifact_key(experiment, stage)
    create_markdown_artifact(markdown=stage_markdown(params, stage, result, recorded), key=key,
                             description=f"{stage} of {experiment}: metrics and links")
    return key
