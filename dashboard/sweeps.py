"""The dashboard's sweep comparison: the experiments of one sweep side by side (accuracy against
speed-up per model × acceleration variant × pre-training recipe, mean and spread over seeds), and
the page's selection from its address (``?experiment=NAME``, the Prefect artifacts' links)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from services.store import ResultsReader

POINT = ["task", "metric", "model", "variant", "recipe"]


def sweep_summary(points: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, metric, model, variant, recipe) of ``ResultsReader.sweep_comparison``:
    seeds, mean and standard deviation (0 for one seed) of the accuracy, the speed-up, and the
    fine-tunes' mean duration in seconds."""
    if points.empty:
        return pd.DataFrame(columns=[*POINT, "seeds", "accuracy", "spread", "speedup", "duration_s"])
    grouped = points.groupby(POINT, dropna=False, sort=True)
    summary = grouped.agg(seeds=("accuracy", "size"), accuracy=("accuracy", "mean"),
                          spread=("accuracy", lambda values: values.std(ddof=0)),
                          speedup=("speedup", "first"), duration_s=("duration_s", "mean"))
    return summary.reset_index()


def sweep_figure(summary: pd.DataFrame, task: str) -> go.Figure:
    """Accuracy against speed-up for one task: a point per (model, variant, recipe), error bars over seeds."""
    rows = summary[summary["task"] == task]
    figure = go.Figure()
    for (model, recipe), group in rows.groupby(["model", "recipe"], sort=True):
        label = f"{model}" + (f" · {recipe}" if recipe and recipe != "default" else "")
        figure.add_trace(go.Scatter(
            x=group["speedup"], y=group["accuracy"], mode="markers+text", name=label, text=group["variant"],
            textposition="top center", error_y={"type": "data", "array": group["spread"], "visible": True},
            marker={"size": 11}, customdata=group[["seeds"]],
            hovertemplate="<b>%{text}</b><br>speed-up %{x:.2f}×<br>%{y:.3g} over %{customdata[0]} seed(s)"
                          "<extra>%{fullData.name}</extra>"))
    metric = rows["metric"].iloc[0] if len(rows) else ""
    figure.update_layout(title=f"sweep: {task} {metric} vs speed-up", xaxis_title="speed-up over baseline (×)",
                         yaxis_title=f"{metric} (val)", height=400, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return figure


def sweep_section(store: ResultsReader) -> None:
    """The *Sweeps* section: pick a sweep, see its experiments compared (nothing when none was recorded)."""
    sweeps = store.sweeps()
    if not sweeps:
        return
    st.header("Sweeps")
    name = st.selectbox("Sweep", sweeps, key="sweep")
    points = store.sweep_comparison(name)
    if points.empty:
        st.info(f"Sweep {name} has no completed fine-tune yet.")
        return
    summary = sweep_summary(points)
    tasks = sorted(summary["task"].unique())
    columns = st.columns(2 if len(tasks) > 1 else 1)
    for index, task in enumerate(tasks):
        with columns[index % len(columns)]:
            st.plotly_chart(sweep_figure(summary, task), key=f"sweep-{task}")
    st.dataframe(summary, hide_index=True, column_config={
        "accuracy": st.column_config.NumberColumn("accuracy (mean)", format="%.3f"),
        "spread": st.column_config.NumberColumn("± (std over seeds)", format="%.3f"),
        "speedup": st.column_config.NumberColumn("speed-up", format="%.2f×"),
        "duration_s": st.column_config.NumberColumn("fine-tune (s)", format="%.0f")})
    with st.expander(f"The {points['experiment'].nunique()} experiments of {name}"):
        st.dataframe(points, hide_index=True)


def select_from_query(key: str, options: list[str]) -> None:
    """Preselect widget ``key`` from the page address (``?experiment=NAME``) when NAME is an option."""
    wanted = st.query_params.get(key)
    if wanted in options and key not in st.session_state:
        st.session_state[key] = wanted
