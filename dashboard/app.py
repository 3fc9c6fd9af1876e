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

from dashboard.sweeps import select_from_query, sweep_section
from services import settings
from services.store import (
    BASELINE,
    MAIN_METRICS,
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


def model_colours(models: list[str]) -> dict[str, str]:
    palette = px.colors.qualitative.Plotly + px.colors.qualitative.Dark24
    return {model: palette[index % len(palette)] for index, model in enumerate(sorted(models))}


def accuracy_figure(points: pd.DataFrame, task: str, colours: dict[str, str]) -> go.Figure:
    """Accuracy against speed-up for one task: a point per variant, a Pareto front per model with its
    variants named."""
    metric = MAIN_METRICS[task]
    figure = go.Figure()
    for model, rows in points.groupby("model", sort=True):
        colour = colours[str(model)]
        figure.add_trace(
            go.Scatter(
                x=rows["speedup"],
                y=rows["accuracy"],
                mode="markers",
                name=str(model),
                legendgroup=str(model),
                marker={"color": colour, "size": 11, "line": {"width": 1, "color": "white"}},
                customdata=rows[["variant", "dataset"]],
                hovertemplate="<b>%{customdata[0]}</b><br>speed-up %{x:.2f}×<br>"
                + metric
                + " %{y:.2f} (%{customdata[1]})<extra>%{fullData.name}</extra>",
            )
        )
        front = pareto_front(rows)
        figure.add_trace(
            go.Scatter(
                x=front["speedup"],
                y=front["accuracy"],
                mode="lines+text",
                text=front["variant"],  # the variants worth choosing, named on the chart
                textposition="top center",
                textfont={"size": 11, "color": colour},
                name=f"{model} Pareto front",
                legendgroup=str(model),
                showlegend=False,
                line={"color": colour, "dash": "dot", "width": 2},
                hoverinfo="skip",
            )
        )
    figure.add_vline(
        x=1.0, line_dash="dash", line_color="grey", annotation_text="baseline 1.0×", annotation_position="bottom right"
    )
    figure.update_layout(
        title=f"{task}: {metric} vs speed-up",
        xaxis_title="speed-up over baseline (×)",
        yaxis_title=f"{metric} (val)",
        height=420,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


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
shown = points[points["task"].isin(chosen_tasks) & points["model"].isin(chosen_models)]
plotted = shown.dropna(subset=["speedup"])
if plotted.empty:
    st.info("No accuracy with a matching benchmark for this selection.")
else:
    st.caption(
        f"One point per acceleration variant on {device or 'any device'}; speed-up is img/s over the "
        f"`{BASELINE}` variant of the same model, resolution and batch; dotted lines are Pareto fronts."
    )
    colours = model_colours(models)
    task_list = sorted(plotted["task"].unique())
    columns = st.columns(2 if len(task_list) > 1 else 1)
    for index, task in enumerate(task_list):
        with columns[index % len(columns)]:
            st.plotly_chart(accuracy_figure(plotted[plotted["task"] == task], task, colours), key=f"accuracy-{task}")
missing = shown[shown["speedup"].isna()]
if not missing.empty:
    st.caption(
        "Without a benchmark on this device (not plotted): "
        + ", ".join(sorted(f"{row.model}/{row.variant}" for row in missing.itertuples()))
    )

sweep_section(store)

st.header("Benchmarks")
bench_shown = benchmarks[benchmarks["model"].isin(chosen_models)]
if device is not None:
    bench_shown = bench_shown[bench_shown["device"] == device]
st.dataframe(
    bench_shown[
        [
            "model",
            "variant",
            "resolution",
            "batch_size",
            "device",
            "dtype",
            "images_per_s",
            "speedup",
            "latency_ms",
            "memory_mb",
            "gflops",
            "run_id",
        ]
    ],
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
    run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="curve-run")
    curves = load_curves(url, int(run_id))
    stepped = curves.groupby("name")["step"].nunique()
    names = sorted(stepped[stepped > 1].index)
    if not names:
        st.info("This run recorded no metric over several steps.")
    else:
        default = [name for name in ("loss", "lr") if name in names] or names[:1]
        for metric in st.multiselect("Metrics", names, default=default, key="curve-metrics"):
            st.plotly_chart(curves_figure(curves, metric), key=f"curve-{metric}")
