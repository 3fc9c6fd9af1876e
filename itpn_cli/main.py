"""``itpn``: run the pipeline, its stages, the benchmarks, the store and the dashboard.

``itpn demo`` is the README's main command: the whole ``experiment`` flow on generated data,
CPU, SQLite and Prefect's temporary server, with a live view of the stages and a summary.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode="markdown")
store_app = typer.Typer(no_args_is_help=True, help="The results store.")
app.add_typer(store_app, name="store")
console = Console()

PARAMS_OPTION = typer.Option("params.yaml", "--params", "-p", help="the pipeline's parameters file")
PLAN_OPTION = typer.Option(False, "--plan", help="print the GPU-hours each stage needs on --card and start nothing")
CARD_OPTION = typer.Option("H200", "--card", help="the card --plan prices (H200, H100, H100-PCIe, A100, L40S, V100)")
SUITE_OPTION = typer.Option("results/gpu_suite/gpu_suite.json", "--suite", help="gpu_suite.json measured on --card: "
                            "its img/s replace the MFU assumption where it has the step (used when it exists)")


def _print_plan(title: str, jobs: list[tuple[str, list[str], Any]], card_name: str, suite_file: str) -> None:
    """GPU-hours per stage (``jobs``: stage, the table rows it serves, its parameters), per row and in total,
    on ``card_name``, beside the paper's own figures (section 5.1). Starts nothing."""
    from flows.costs import row_totals, stage_work
    from itpn.bench.cards import get_card
    from itpn.bench.cost import ASSUMED_MFU, load_suite, stage_cost

    try:
        card = get_card(card_name)
        suite = load_suite(suite_file, card)
    except ValueError as error:
        raise typer.BadParameter(str(error))
    costs = [stage_cost(stage_work(stage, params), card, suite) for stage, _, params in jobs]
    view = Table(title=f"{title}: GPU-hours on one {card.name} ({card.bf16_tflops:g} TFLOP/s bf16 dense: {card.source})")
    for column in ("stage", "rows", "images", "GFLOPs/img", "img/s", "GPU-h", "basis", "paper (section 5.1)"):
        view.add_column(column, justify="right" if column in ("GFLOPs/img", "img/s", "GPU-h") else "left")
    for (stage, rows, _), cost in zip(jobs, costs):
        work = cost.work
        paper = "-" if work.paper_v100_hours is None else f"{work.paper_v100_hours:,.0f} V100-h (64 V100s)"
        view.add_row(stage, Text(", ".join(rows) or "all"), Text(work.images_basis), f"{work.gflops_per_image:,.1f}",
                     f"{cost.images_per_s:,.1f}", f"{cost.gpu_hours:,.1f}", Text(f"{cost.rate_basis}; {work.flops_basis}"),
                     paper)
    wide = console if console.is_terminal else Console(width=220)  # a log or a test: room for every column
    wide.print(view)
    if any(rows for _, rows, _ in jobs):
        per_row = row_totals([type("J", (), {"rows": rows})() for _, rows, _ in jobs], [c.gpu_hours for c in costs])
        rows_view = Table(title="per row (a stage several rows share is counted once in the total)")
        for column in ("row", "own GPU-h", "shared GPU-h"):
            rows_view.add_column(column, justify="left" if column == "row" else "right")
        for row, (own, shared) in per_row.items():
            rows_view.add_row(Text(row), f"{own:,.1f}", f"{shared:,.1f}")
        wide.print(rows_view)
    total = sum(cost.gpu_hours for cost in costs)
    paper_total = sum(cost.work.paper_v100_hours or 0.0 for cost in costs)
    wide.print(f"total: {total:,.1f} GPU-hours on one {card.name} ({total / 8:,.1f} hours on 8)"
                  + (f"; the paper's pre-training figures: {paper_total:,.0f} V100-hours" if paper_total else "")
                  + ("" if suite else f"; no gpu_suite.json for a {card.name} at {suite_file}: img/s from "
                     f"{100 * ASSUMED_MFU:.0f} % MFU (our assumption)"))


def _offline() -> None:
    """Prefect's home and the store in the state directory, analytics off; before Prefect is imported."""
    from services.settings import offline_env, state_dir

    state_dir(create=True)
    for key, value in offline_env().items():
        os.environ.setdefault(key, value)


def _load(params_file: str) -> Any:
    """The parameters file, checked whole (the data sets included) before anything starts; each problem
    printed as one line, then exit 2."""
    from flows.params import ParamsError, PipelineParams

    try:
        return PipelineParams.load(params_file, check_data=True)
    except ParamsError as error:
        _invalid(error)


def _invalid(error: Exception) -> None:
    """Print a ``ParamsError``'s lines (plain text: keys and values are not rich markup) and exit 2."""
    console.print(f"[red]invalid parameters ({len(getattr(error, 'problems', [])) or 1} problem(s)):[/red]")
    for line in str(error).splitlines():
        console.print(Text(line))
    raise typer.Exit(2)


def _stage_table(stages: list[str], params: Any, started: float) -> Table:
    """Each stage's state: done (this run), running (its run folder claimed since the start: several at
    once when the fine-tunes fan out), cached (unchanged inputs and code) or waiting (for its turn or a
    free training slot); ``start`` is when it began, counted from the experiment's start."""
    from datetime import datetime

    from flows.stages.result import StageResult

    now = time.time()
    table = Table(title=f"experiment '{params.experiment.name}' ({now - started:.0f} s)")
    for column in ("stage", "status", "start", "seconds", "result"):
        table.add_column(column, justify="right" if column in ("start", "seconds") else "left")
    for stage in stages:
        path = params.stage_dir(stage) / "result.json"
        claimed = params.run_dir(stage) / ".stage_key"
        if path.exists() and path.stat().st_mtime >= started - 1:
            result = StageResult.read(path)
            begin = datetime.fromisoformat(result.started_at).timestamp() if result.started_at else None
            table.add_row(stage, "[green]done", f"+{begin - started:.0f}" if begin else "", f"{result.seconds:.0f}",
                          Text(_result_summary(result)))
        elif claimed.exists() and claimed.stat().st_mtime >= started - 1:
            begin = claimed.stat().st_mtime
            table.add_row(stage, "[yellow]running", f"+{begin - started:.0f}", f"{now - begin:.0f}", "")
        elif path.exists():
            table.add_row(stage, "[cyan]cached", "", "", "unchanged inputs and code")
        else:
            table.add_row(stage, "[dim]waiting", "", "", "")
    return table


def _result_summary(result: Any) -> str:
    """A stage's headline: the first evaluation metrics of the variant it trained, and how many other
    acceleration variants it evaluated (plain text: variant names are not rich markup)."""
    if result.benchmarks:
        return f"{len(result.benchmarks)} benchmark rows"
    variants = list(dict.fromkeys(row.get("variant") or "" for row in result.metrics))
    if not variants:
        return "; ".join(result.notes[:2])
    trained = [row for row in result.metrics if (row.get("variant") or "") == variants[0]]
    shown = [row for row in trained if row.get("split") != "train"] or trained
    summary = ", ".join(f"{row['name']} {row['value']:.3g}" for row in shown[:3])
    if len(variants) > 1:
        others = len(variants) - 1
        summary += f" ({variants[0]}; {others} more variant{'s' if others > 1 else ''} evaluated)"
    return summary


def _run_flow_live(flow_name: str, stages: list[str], params_file: str, params: Any) -> None:
    """Run a flow on ``params_file`` (``params``: the file, checked) while a table shows each stage's state;
    exit 1 with the error if it fails."""
    _offline()
    from flows import pipeline
    from flows.resources import reset_slots

    flow = getattr(pipeline, flow_name)
    # slots a killed earlier run left taken on this temporary server (a real server frees them itself)
    freed = [] if os.environ.get("PREFECT_API_URL") else reset_slots()
    if freed:
        console.print(f"freed the training slots an interrupted run left taken ({', '.join(freed)})")
    started = time.time()
    error: list[BaseException] = []

    def target() -> None:
        try:
            flow(params_file=params_file)
        except BaseException as exc:  # reported below, after the live view stops
            error.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    with Live(_stage_table(stages, params, started), console=console, refresh_per_second=1) as live:
        while worker.is_alive():
            worker.join(timeout=1.0)
            live.update(_stage_table(stages, params, started))
    if error:
        console.print(f"[red]{flow_name} failed:[/red] {error[0]}")
        raise typer.Exit(1)


def _planned_stages(params: Any) -> list[str]:
    """The stages ``experiment`` runs: every stage but the fine-tunes the parameters leave out."""
    from flows.outline import FINETUNE_TASKS, STAGE_NAMES, finetune_stage

    skipped = {finetune_stage(task) for task in FINETUNE_TASKS if task not in params.finetune}
    return [stage for stage in STAGE_NAMES if stage not in skipped]


def _summary(params_file: str, params: Any) -> None:
    from flows.outline import FINETUNE_TASKS

    from services.store import open_reader

    missing = [t for t in FINETUNE_TASKS if t not in params.finetune]
    with open_reader() as reader:
        points = reader.accuracy_vs_speedup(experiment=params.experiment.name)
    models = sorted(points["model"].unique()) if len(points) else []
    one_model = len(models) == 1
    title = "accuracy against speed-up (from the results store)" + (f": {models[0]}" if one_model else "")
    table = Table(title=title)
    columns = ("task", "variant", "metric", "value", "speed-up") if one_model else (
        "task", "model", "variant", "metric", "value", "speed-up")
    for column in columns:
        table.add_column(column, no_wrap=column in ("task", "variant"),
                         justify="right" if column in ("value", "speed-up") else "left")
    for row in points.itertuples():
        speedup = getattr(row, "speedup", None)
        cells = [str(row.task), str(row.variant), str(getattr(row, "metric", "")), f"{row.accuracy:.4g}",
                 f"{speedup:.2f}×" if speedup == speedup and speedup else "-"]
        if not one_model:
            cells.insert(1, str(row.model))
        table.add_row(*[Text(cell) for cell in cells])
    console.print(table)
    if missing:
        console.print(f"[yellow]not in this run:[/yellow] {', '.join(missing)} fine-tuning (not configured in "
                      f"{params_file}); no results are recorded for them.")
    console.print("Open the dashboard: [bold]itpn dashboard[/bold] (then http://127.0.0.1:8501)")


@app.command()
def run(params: str = PARAMS_OPTION, plan: bool = PLAN_OPTION, card: str = CARD_OPTION,
        suite: str = SUITE_OPTION) -> None:
    """The whole experiment of a parameters file: prepare, pre-train, fine-tune, benchmark, record."""
    if plan:
        from flows.params import ParamsError, PipelineParams

        try:
            checked = PipelineParams.load(params)
        except ParamsError as error:
            _invalid(error)
        _print_plan(f"itpn run {params}", [(stage, [], checked) for stage in _planned_stages(checked)], card, suite)
        return
    checked = _load(params)
    started = time.time()
    _run_flow_live("experiment", _planned_stages(checked), params, checked)
    console.print(f"experiment finished in {time.time() - started:.0f} s")
    _summary(params, checked)


@app.command()
def demo() -> None:
    """The whole experiment on generated data (the repository's params.yaml): ``itpn run`` of the demo."""
    # a command called as a function gets typer.Option objects for what it is not given: give every option
    run("params.yaml", plan=False, card=CARD_OPTION.default, suite=SUITE_OPTION.default)


@app.command()
def prepare(params: str = PARAMS_OPTION) -> None:
    """Generate (or find) and validate the data sets; write their manifests."""
    _run_flow_live("prepare_data", ["prepare_data"], params, _load(params))


@app.command()
def pretrain(params: str = PARAMS_OPTION) -> None:
    """Integral pre-training (MIM + MFM); torchrun when experiment.gpus > 1."""
    _run_flow_live("pretrain", ["pretrain"], params, _load(params))


@app.command()
def finetune(task: str = typer.Argument(..., help="classification | detection | segmentation | rotated"),
             params: str = PARAMS_OPTION) -> None:
    """Fine-tune one task from the pre-training export."""
    from flows.outline import FINETUNE_TASKS, finetune_stage

    if task not in FINETUNE_TASKS:
        raise typer.BadParameter(f"unknown task {task!r}; the tasks are {', '.join(FINETUNE_TASKS)}")
    _run_flow_live(finetune_stage(task), [finetune_stage(task)], params, _load(params))


@app.command()
def bench(params: str = PARAMS_OPTION) -> None:
    """Benchmark every acceleration variant and record the rows."""
    _run_flow_live("benchmark_acceleration", ["benchmark_acceleration"], params, _load(params))


@app.command()
def reproduce(table: str = typer.Argument(..., help="table7 | table8 | table9 | figure5"),
              scale: str = typer.Option("demo", "--scale", help="smoke | demo | small | paper "
                                        "(configs/reproduce/<scale>.yaml; smoke: a few updates, checks the plumbing)"),
              rows: Optional[str] = typer.Option(None, "--rows", help="comma-separated rows to run (default: all)"),
              data_root: Optional[str] = typer.Option(None, "--data-root", help="URL of the real data sets in "
                                                      "their standard layouts (default: generated data)"),
              output_dir: Optional[str] = typer.Option(None, "--output-dir", help="where the grid's runs go"),
              plan_only: bool = PLAN_OPTION, card: str = CARD_OPTION, suite: str = SUITE_OPTION) -> None:
    """Run the pre-training x fine-tuning grid one of the paper's tables needs, record every run in the
    store under `reproduce-<table>-<scale>`, and print our table beside the paper's numbers."""
    _offline()
    from flows.params import ParamsError
    from flows.reproduce import SCALES, plan
    from flows.reproduce import reproduce as reproduce_flow

    if scale not in SCALES:
        raise typer.BadParameter(f"unknown scale {scale!r}; the scales are {', '.join(SCALES)}")
    row_names = [name.strip() for name in rows.split(",") if name.strip()] if rows is not None else None
    try:  # every job's parameters, and the data sets, checked before Prefect starts
        jobs = plan(table, scale, data_root=data_root, output_dir=output_dir, rows=row_names,
                    check_data=not plan_only, write=not plan_only)
    except ParamsError as error:
        _invalid(error)
    except ValueError as error:  # an unknown table or row
        raise typer.BadParameter(str(error))
    if plan_only:
        _print_plan(f"itpn reproduce {table} --scale {scale}", [(job.stage, job.rows, job.params) for job in jobs],
                    card, suite)
        return

    started = time.time()
    try:
        reproduce_flow(table=table, scale=scale, data_root=data_root, output_dir=output_dir, rows=row_names)
    except Exception as error:
        console.print(f"[red]reproduce {table} failed:[/red] {error}")
        raise typer.Exit(1)
    console.print(f"{table} at scale {scale} finished in {time.time() - started:.0f} s")
    print_reproduced_table(table, scale)


def print_reproduced_table(table: str, scale: str) -> None:
    """Our numbers beside the paper's, read back from the results store."""
    from services.paper_tables import load_paper_tables, reproduced_table
    from services.store import open_reader

    spec = load_paper_tables()[table]
    with open_reader() as reader:
        frame = reproduced_table(reader, table, scale)
    view = Table(title=f"{spec.title} - ours ({scale} scale) beside the paper")
    for column in frame.columns:
        view.add_column(column, justify="left" if column in ("row", "paper row") else "right")
    for line in frame.itertuples(index=False):
        view.add_row(*[Text(value if isinstance(value, str) else "-" if value != value else f"{value:.4g}")
                       for value in line])
    console.print(view)


@app.command()
def models(resolution: int = typer.Option(224, help="input size for the GFLOPs column")) -> None:
    """Every registered model with its parameters and GFLOPs (counted on the meta device)."""
    import timm
    import torch

    from itpn.bench import count_gflops
    from itpn.models import MODEL_NAMES

    table = Table(title=f"itpn models (GFLOPs per {resolution}² image, 2 FLOPs per multiply-add)")
    for column in ("model", "params (M)", "GFLOPs"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for name in MODEL_NAMES:
        with torch.device("meta"):
            model = timm.create_model(name, img_size=resolution)
            image = torch.empty(1, 3, resolution, resolution)
            gflops = count_gflops(lambda: model(image))
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
        table.add_row(name, f"{params_m:.1f}", f"{gflops:.1f}")
    console.print(table)


@app.command()
def attention(image: str = typer.Argument(..., help="an image file (any format PIL reads)"),
              model: str = typer.Option("fast_itpn_base_patch16_224", help="a model of `itpn models`"),
              checkpoint: Optional[str] = typer.Option(None, help="weights: a pre-training export, a fine-tuned or "
                                                       "released checkpoint (default: random initialisation)"),
              block: int = typer.Option(..., help="stage-3 block, 0-based (Figure 6 shows several depths)"),
              query: str = typer.Option(..., help="the query pixel as X,Y in the resized image"),
              size: int = typer.Option(224, help="the image is resized to SIZE x SIZE (Figure 6: 224, COCO 512)"),
              out: str = typer.Option("attention.png", help="the PNG to write")) -> None:
    """Draw the attention map of one query token (the paper's Figure 6): the head-averaged softmax row of
    the query in a stage-3 block, over the image, the query outlined in red. Compare an iTPN export, one
    pre-trained without the pyramid and a MIM baseline by running it on each checkpoint."""
    try:
        x, y = (int(part) for part in query.split(","))
    except ValueError:
        typer.secho(f"--query {query!r}: expected two integers X,Y (pixels of the {size}x{size} image), "
                    f"e.g. --query {size // 2},{size // 2}", fg="red", err=True)
        raise typer.Exit(2)
    from itpn.analysis import attention_figure
    from itpn.models import MODEL_NAMES, create_model, load_checkpoint

    if model not in MODEL_NAMES:
        typer.secho(f"--model {model!r} is not one of ours; `itpn models` lists them", fg="red", err=True)
        raise typer.Exit(2)
    network = create_model(model, img_size=size)
    if checkpoint:
        # the pyramid and heads are not on the path to stage 3's attention; the backbone must load whole
        report = load_checkpoint(network, checkpoint, skip=("pyramid.",))
        console.print(f"loaded {checkpoint}: {report.summary()}")
    try:
        drawn, weights = attention_figure(network, image, block, (x, y), size=size)
    except (FileNotFoundError, ValueError) as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(2)
    drawn.save(out)
    top = weights.mean.flatten().max().item()
    console.print(f"{out}: block {block}, query token (row {weights.query[0]}, column {weights.query[1]}) of a "
                  f"{weights.mean.shape[0]}x{weights.mean.shape[1]} grid, largest weight {top:.3f}")


@app.command()
def dashboard(port: int = typer.Option(8501), address: str = typer.Option("127.0.0.1")) -> None:
    """Start the Streamlit dashboard over the results store (read-only)."""
    from dashboard.launch import streamlit_command, streamlit_env

    console.print(f"dashboard on http://{address}:{port} (Ctrl-C stops it)")
    raise typer.Exit(subprocess.call(streamlit_command(port=port, address=address),
                                     env={**os.environ, **streamlit_env()}))


@app.command()
def doctor() -> None:
    """What this environment has (Python, torch and GPU, timm, OpenMMLab and mmcv's compiled ops, Prefect,
    DVC, Streamlit, Chromium, the store and the state directory); exits 1, naming the fix, when something
    the demo needs is missing."""
    from itpn_cli.doctor import FAIL, failed, run_checks

    checks = run_checks()
    table = Table(title="itpn doctor")
    for column in ("component", "status", "details", "fix"):
        table.add_column(column, overflow="fold")
    colours = {"ok": "green", "info": "cyan", "warn": "yellow", FAIL: "red"}
    for check in checks:
        table.add_row(check.name, Text(check.status, style=colours[check.status]), Text(check.detail), Text(check.fix))
    console.print(table)
    missing = failed(checks)
    if missing:
        console.print(f"[red]{len(missing)} thing(s) the demo needs are missing or broken:[/red] "
                      + ", ".join(check.name for check in missing))
        raise typer.Exit(1)
    console.print("[green]ready:[/green] everything `itpn demo` needs is here")


@store_app.command("upgrade")
def store_upgrade(url: Optional[str] = typer.Option(None, help="store URL (default: ITPN_STORE_URL or "
                                                                   "the SQLite file in the state directory)")) -> None:
    """Create the store or migrate it to the newest schema."""
    from services.settings import store_url
    from services.store import upgrade

    revision = upgrade(url)
    console.print(f"store {url or store_url()} at revision {revision}")


if __name__ == "__main__":
    app()
