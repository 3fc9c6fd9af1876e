"""Ablations: the paper's tables reproduced by ``itpn reproduce``, our numbers beside the paper's.

A page of the Streamlit app (``itpn dashboard``): it reads the experiments ``reproduce-<table>-<scale>``
from the results store (read-only) and the paper's numbers from ``configs/paper_numbers.yaml``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from services import settings
from services.paper_tables import experiment_name, load_paper_tables, reproduced_table
from services.store import StoreError, open_reader

st.set_page_config(page_title="Ablations", layout="wide")
st.title("Ablations: ours beside the paper")

url = settings.store_url()
st.sidebar.caption(f"Store: `{url}` (read-only)")
tables = load_paper_tables()
try:
    with open_reader(url) as reader:
        experiments = set(reader.experiments()["name"])
        done = [(table, scale) for table in tables for scale in ("demo", "small", "paper")
                if experiment_name(table, scale) in experiments]
        if not done:
            st.info("No reproduced table in the store yet: run `itpn reproduce table9 --scale demo` "
                    "(or table7, table8, figure5), then refresh.")
            st.stop()
        table, scale = st.sidebar.selectbox("Table", done, format_func=lambda pair: f"{pair[0]} ({pair[1]} scale)",
                                            key="reproduced")
        frame = reproduced_table(reader, table, scale)
except StoreError as error:
    st.error(f"The results store cannot be read: {error}")
    st.stop()

spec = tables[table]
st.header(spec.title)
if scale != "paper":
    st.caption(f"Ours at the `{scale}` scale (configs/reproduce/{scale}.yaml): small models on small data, so "
               "compare the order of the rows with the paper's, not the values.")
st.dataframe(frame, hide_index=True,
             column_config={column: st.column_config.NumberColumn(column, format="%.2f")
                            for column in frame.columns if column not in ("row", "paper row")})

for column in spec.columns:
    ours, paper = frame[f"{column.name} ours"], frame[f"{column.name} paper"]
    if ours.isna().all() and paper.isna().all():
        continue
    figure = go.Figure([go.Bar(name="ours", x=frame["row"], y=ours),
                        go.Bar(name="paper", x=frame["row"], y=paper)])
    figure.update_layout(title=f"{column.name} ({column.unit})" if column.unit else column.name, barmode="group",
                         yaxis_title=column.unit, legend_title=None)
    st.plotly_chart(figure, key=f"ablation-{column.name}")
missing = [column.name for column in spec.columns if frame[f"{column.name} ours"].isna().all()]
if missing:
    st.caption(f"Not run at this scale: {', '.join(missing)} (`--scale small` or `paper` fine-tunes every column).")
