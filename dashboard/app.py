"""Fast-iTPN results dashboard: accuracy against speed-up, benchmarks, runs, training curves.

Run with ``itpn dashboard`` (or ``streamlit run dashboard/app.py``). It reads the results
store named by ``ITPN_STORE_URL`` (default: the SQLite file in the state directory),
read-only, through ``services.store``.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard.paper_points import paper_points
from dashboard.sweeps import select_from_query, sweep_section
from itpn.records import LAYOUT_FIELDS, MAIN_METRICS, PERCENT, model_size
from services import settings
from services.store import (
    BASELINE,
    ResultsReader,
    StoreError,
    StoreNotInitialisedError,
    open_reader,
    pareto_front,
)

REFRESH_S = 30
ALL = "All"


@st.cache_resource(show_spinner=False)
def reader(url: str) -> ResultsReader:
    return open_reader(url)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_runs(url: str) -> pd.DataFrame:
    return reader(url).runs()


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_points(url: str, experiment: str | None, device: str | None) -> pd.DataFrame:
    return reader(url).accuracy_vs_speedup(experiment=experiment, device=device)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_benchmarks(url: str, experiment: str | None) -> pd.DataFrame:
    return reader(url).benchmarks(experiment=experiment)


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def load_curves(url: str, run_id: int) -> pd.DataFrame:
    return reader(url).training_curves(run_id)


X_AXES = {"measured speed-up": "speedup", "FLOP reduction": "flop_reduction"}


def with_flop_reduction(points: pd.DataFrame, benchmarks: pd.DataFrame) -> pd.DataFrame:
    """``points`` plus ``flop_reduction``: the baseline's GFLOPs over the variant's, from the benchmark
    rows of the same model, device, resolution and batch (NaN where either was not counted)."""
    key = ["model", "device", "resolution", "batch_size"]
    counted = benchmarks.dropna(subset=["gflops"]).sort_values("recorded_at").drop_duplicates(
        [*key, "variant"], keep="last")
    base = counted[counted["variant"] == BASELINE][[*key, "gflops"]].rename(columns={"gflops": "base_gflops"})
    flops = counted[[*key, "variant", "gflops"]].merge(base, on=key, how="left")
    flops["flop_reduction"] = flops["base_gflops"] / flops["gflops"]
    merged = points.merge(flops[[*key, "variant", "flop_reduction"]], on=[*key, "variant"], how="left")
    merged.index = points.index
    return merged


SYMBOLS = ("circle", "square", "triangle-up", "star", "hexagon", "cross")


def variant_colours(variants: list[str]) -> dict[str, str]:
    """One colour per acceleration variant, the same in every panel (the variants' own order, then the rest)."""
    from itpn.models import VARIANTS

    palette = px.colors.qualitative.Plotly + px.colors.qualitative.Dark24
    ordered = [*VARIANTS, *sorted(set(variants) - set(VARIANTS))]
    return {variant: palette[index % len(palette)] for index, variant in enumerate(ordered)}


def _listed(values: pd.Series, form: str = "{}") -> str:
    return ", ".join(form.format(value) for value in sorted(values.dropna().unique()))


def x_axis_title(x: str, points: pd.DataFrame, device: str | None) -> str:
    """The x-axis title: what is measured, at which input sizes, on which device, in which dtype and batch."""
    sizes = _listed(points["input_h"].astype(int).astype(str) + "×" + points["input_w"].astype(int).astype(str))
    where = f" at {sizes} px" if sizes else ""
    if x == "flop_reduction":
        return f"FLOP reduction: baseline GFLOPs / variant GFLOPs (×)<br>{where.strip()}"
    dtypes, batches = _listed(points["benchmark_dtype"]), _listed(points["batch_size"].astype(int))
    return (f"measured speed-up over baseline (×)<br>{where.strip()}{f' on {device}' if device else ''}, {dtypes}, "
            f"batch {batches}")


def y_axis_title(task: str, points: pd.DataFrame) -> str:
    """The y-axis title: the task's main metric in percent, at which input sizes, on which device, in which dtype."""
    sizes = _listed(points["input_h"].astype(int).astype(str) + "×" + points["input_w"].astype(int).astype(str))
    return (f"{MAIN_METRICS[task]} (%, val)<br>at {sizes} px on {_listed(points['eval_device'])}, "
            f"{_listed(points['eval_dtype'])}")


def _paper_trace(rows: pd.DataFrame, source: str) -> go.Scatter:
    return go.Scatter(
        x=rows["speedup"], y=rows["accuracy"], mode="markers", name=f"paper, {source}",
        marker={"color": "grey", "size": 10, "symbol": "diamond-open"}, customdata=rows[["variant"]],
        hovertemplate="<b>%{customdata[0]}</b> (paper)<br>speed-up %{x:.2f}×<br>%{y:.1f} %<extra></extra>",
    )


def accuracy_figure(points: pd.DataFrame, task: str, x: str = "speedup", paper: pd.DataFrame | None = None,
                    device: str | None = None) -> go.Figure:
    """Accuracy (in %, ``PERCENT``) against ``x`` (``speedup`` or ``flop_reduction``) for one task.

    A trace per (model, variant): the variant's colour, the model's marker, the variant (and the model's size
    when several are shown) in the legend, no text on the points, so no two labels can cover each other;
    the hover gives variant, model, values and the configuration (input size and layout) both halves share.
    A dotted Pareto front per model. The paper's points share the axes when ``x`` is the speed-up (the same
    quantities: speed-up × and accuracy in %); the paper gives no FLOPs, see ``paper_figure``.
    """
    metric = MAIN_METRICS[task]
    figure = go.Figure()
    colours = variant_colours(points["variant"].tolist())
    models = sorted(points["model"].unique())
    scaled = points.assign(accuracy=points["accuracy"] * PERCENT[task])
    for index, (model, rows) in enumerate(scaled.groupby("model", sort=True)):
        for variant, own in rows.groupby("variant", sort=False):
            figure.add_trace(go.Scatter(
                x=own[x], y=own["accuracy"], mode="markers",
                name=str(variant) if len(models) == 1 else f"{variant} · {model_size(str(model)) or model}",
                legendgroup=str(variant),
                marker={"color": colours[str(variant)], "size": 11, "symbol": SYMBOLS[index % len(SYMBOLS)],
                        "line": {"width": 1, "color": "white"}},
                customdata=own[["variant", "model", "configuration", "dataset"]],
                hovertemplate="<b>%{customdata[0]}</b> · %{customdata[1]}<br>%{x:.2f}×, " + metric
                + " %{y:.2f} % (%{customdata[3]})<br>%{customdata[2]}<extra></extra>",
            ))
        front = pareto_front(rows, x=x)
        figure.add_trace(go.Scatter(
            x=front[x], y=front["accuracy"], mode="lines", name=f"{model} Pareto front", showlegend=False,
            line={"color": "grey", "dash": "dot", "width": 2}, hoverinfo="skip",
        ))
    if paper is not None and x == "speedup" and not paper.empty:
        for source, rows in paper.groupby("source", sort=True):
            figure.add_trace(_paper_trace(rows, str(source)))
    figure.add_vline(x=1.0, line_dash="dash", line_color="grey", annotation_text="baseline 1.0×",
                     annotation_position="bottom right")
    label = "speed-up" if x == "speedup" else "FLOP reduction"
    figure.update_layout(
        title=f"{task}: {metric} vs {label}",
        xaxis_title=x_axis_title(x, points, device if x == "speedup" else None),
        yaxis_title=y_axis_title(task, points),
        height=560,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"title": {"text": "variant"}, "font": {"size": 11}, "orientation": "h", "yanchor": "top", "y": -0.25},
    )
    return figure


def paper_figure(paper: pd.DataFrame, task: str) -> go.Figure:
    """The paper's points of ``task`` in a panel of their own (speed-up ×, accuracy %): beside a FLOP axis,
    which the paper does not report."""
    figure = go.Figure([_paper_trace(rows, str(source)) for source, rows in paper.groupby("source", sort=True)])
    figure.update_layout(title=f"{task}: the paper's points (speed-up, not FLOPs)", height=320,
                         xaxis_title="speed-up over baseline (×), the paper's GPU", yaxis_title="accuracy (%)",
                         margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return figure


def unpaired_benchmarks(benchmarks: pd.DataFrame, points: pd.DataFrame) -> list[str]:
    """A line for each benchmark configuration (model, variant, input size, layout) that no accuracy shares."""
    timed = benchmarks[benchmarks["input_h"] > 0].drop_duplicates(["model", "variant", *LAYOUT_FIELDS])
    measured = points[points["input_h"] > 0][["model", "variant", *LAYOUT_FIELDS]].drop_duplicates()
    alone = timed.merge(measured, on=["model", "variant", *LAYOUT_FIELDS], how="left", indicator=True)
    alone = alone[alone["_merge"] == "left_only"]
    return sorted(f"no accuracy at {int(row.input_h)}×{int(row.input_w)} for {row.variant} ({row.model}, "
                  f"{row.configuration})" for row in alone.itertuples())


def measured_columns(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """``columns`` less those with no value in ``frame`` (e.g. CUDA memory in CPU benchmarks)."""
    return [column for column in columns if column in frame and frame[column].notna().any()]


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def runs_with_curves(url: str, run_ids: tuple[int, ...]) -> list[int]:
    """The runs (of ``run_ids``, in that order) that recorded some metric over several steps."""
    return [run_id for run_id in run_ids if (load_curves(url, run_id).groupby("name")["step"].nunique() > 1).any()]


def curves_figure(curves: pd.DataFrame, metric: str) -> go.Figure:
    rows = curves[curves["name"] == metric].copy()
    labels = rows[["split", "model", "variant"]].astype(str)
    rows["series"] = labels.apply(lambda parts: " · ".join(part for part in parts if part), axis=1)
    figure = px.line(rows, x="step", y="value", color="series", markers=len(rows) < 60, title=metric)
    figure.update_layout(height=360, margin={"l": 10, "r": 10, "t": 50, "b": 10}, yaxis_title=metric)
    return figure


def error_summary(error: object) -> str:
    """The last line of a stored traceback: the exception and its message."""
    return error.strip().splitlines()[-1] if isinstance(error, str) and error.strip() else ""


st.set_page_config(page_title="Fast-iTPN results", layout="wide")
st.title("Fast-iTPN results")

url = settings.store_url()
try:
    store = reader(url)
    empty = store.is_empty()
except StoreNotInitialisedError as exc:
    st.info(f"{exc}.")
    st.stop()
except StoreError as exc:
    st.error(str(exc))
    st.stop()

st.sidebar.caption(f"Store: `{store.url}` (read-only)")
if st.sidebar.button("Refresh data"):
    st.cache_data.clear()
if empty:
    st.info(
        "The results store has no runs yet. Fill it with `itpn demo` (the whole pipeline on "
        "small data) or run the flows; this page shows their results as they arrive."
    )
    st.stop()

runs = load_runs(url)
experiments = sorted(runs["experiment"].unique())
select_from_query("experiment", [ALL, *experiments])
experiment_choice = st.sidebar.selectbox("Experiment", [ALL, *experiments], key="experiment")
experiment = None if experiment_choice == ALL else experiment_choice

benchmarks = load_benchmarks(url, experiment)
devices = benchmarks["device"].value_counts().index.tolist()
device = st.sidebar.selectbox("Device", devices, key="device") if devices else None
points = load_points(url, experiment, device)

tasks = sorted(points["task"].unique())
models = sorted(set(points["model"]) | set(benchmarks["model"]))
chosen_tasks = st.sidebar.multiselect("Task", tasks, default=tasks, key="tasks")
chosen_models = st.sidebar.multiselect("Model", models, default=models, key="models")

st.header("Accuracy vs speed-up")
x_label = st.radio("x-axis", list(X_AXES), horizontal=True, key="x-axis")
x_column = X_AXES[x_label]
shown = with_flop_reduction(points[points["task"].isin(chosen_tasks) & points["model"].isin(chosen_models)], benchmarks)
plotted = shown.dropna(subset=[x_column])
if plotted.empty:
    st.info("No accuracy with a benchmark of the same configuration for this selection.")
else:
    st.caption(
        f"A point is one configuration: an accuracy and a benchmark of the same model, variant, input size and "
        f"acceleration layout on {device or 'any device'} (hover for it; the table below lists it). "
        + (
            f"Speed-up is measured img/s over the `{BASELINE}` variant of the same model, resolution and batch; "
            "grey diamonds are the paper's points (Fig. 5, Table 7), on the same axes: speed-up × and accuracy in %"
            if x_column == "speedup"
            else f"FLOP reduction is the `{BASELINE}` variant's GFLOPs over the variant's; the paper reports "
            "speed, not FLOPs, so its points stand in panels of their own"
        )
        + "; dotted lines are Pareto fronts."
    )
    paper = paper_points()
    task_list = sorted(plotted["task"].unique())
    columns = st.columns(2 if len(task_list) > 1 else 1)
    for index, task in enumerate(task_list):
        with columns[index % len(columns)]:
            task_paper = paper[paper["task"] == task]
            figure = accuracy_figure(plotted[plotted["task"] == task], task, x=x_column, paper=task_paper,
                                     device=device)
            st.plotly_chart(figure, key=f"accuracy-{task}")
            if x_column != "speedup" and not task_paper.empty:
                st.plotly_chart(paper_figure(task_paper, task), key=f"paper-{task}")
    st.dataframe(
        plotted[["task", "model", "variant", "metric", "accuracy", x_column, "configuration", "eval_device",
                 "eval_dtype", "device", "benchmark_dtype", "batch_size"]],
        hide_index=True,
        column_config={"speedup": st.column_config.NumberColumn("speed-up", format="%.2f×"),
                       "flop_reduction": st.column_config.NumberColumn("FLOP reduction", format="%.2f×"),
                       "device": "benchmark device"},
        key="points-table",
    )
missing = [row.missing for row in shown.itertuples() if row.missing]
missing += unpaired_benchmarks(benchmarks if device is None else benchmarks[benchmarks["device"] == device], shown)
if missing:
    st.warning("Not drawn, a half of the pair is missing:\n\n" + "\n".join(f"- {line}" for line in missing))

sweep_section(store)

st.header("Benchmarks")
bench_shown = benchmarks[benchmarks["model"].isin(chosen_models)]
if device is not None:
    bench_shown = bench_shown[bench_shown["device"] == device]
bench_columns = ["model", "variant", "resolution", "batch_size", "device", "dtype", "images_per_s", "speedup",
                 "latency_ms", "memory_mb", "gflops", "configuration", "run_id"]
st.dataframe(
    bench_shown[measured_columns(bench_shown, bench_columns)],
    hide_index=True,
    column_config={
        "images_per_s": st.column_config.NumberColumn("img/s", format="%.1f"),
        "speedup": st.column_config.NumberColumn("speed-up", format="%.2f×"),
        "latency_ms": st.column_config.NumberColumn("latency (ms)", format="%.2f"),
        "memory_mb": st.column_config.NumberColumn("memory (MB)", format="%.0f"),
        "gflops": st.column_config.NumberColumn("GFLOPs", format="%.1f"),
    },
)

st.header("Runs")
runs_shown = runs if experiment is None else runs[runs["experiment"] == experiment]
table = runs_shown[
    ["run_id", "experiment", "flow_name", "run_key", "status", "attempts", "started_at", "duration_s", "git_commit"]
].copy()
table["error"] = runs_shown["error"].map(error_summary)
st.dataframe(
    table,
    hide_index=True,
    column_config={"duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f")},
)
for failed in runs_shown[runs_shown["status"] == "failed"].head(5).itertuples():
    with st.expander(f"Error of run {failed.run_id} ({failed.run_key})"):
        st.code(str(failed.error), language="text")

st.header("Training curves")
if runs_shown.empty:
    st.info("No runs in this experiment.")
else:
    labels = {row.run_id: f"#{row.run_id} {row.run_key} ({row.status})" for row in runs_shown.itertuples()}
    with_curves = runs_with_curves(url, tuple(int(run_id) for run_id in labels))
    opening = list(labels).index(with_curves[0]) if with_curves else 0  # open on a run that has curves
    run_id = st.selectbox("Run", list(labels), index=opening, format_func=labels.get, key="curve-run")
    curves = load_curves(url, int(run_id))
    stepped = curves.groupby("name")["step"].nunique()
    names = sorted(stepped[stepped > 1].index)
    if not names:
        st.info("This run recorded no metric over several steps.")
    else:
        default = [name for name in ("loss", "lr") if name in names] or names[:1]
        for metric in st.multiselect("Metrics", names, default=default, key="curve-metrics"):
            st.plotly_chart(curves_figure(curves, metric), key=f"curve-{metric}")
