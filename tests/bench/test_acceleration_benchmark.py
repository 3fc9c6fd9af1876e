"""benchmarks/acceleration.py end to end at a toy size: the baseline is always measured, the rows
carry exactly the results store's benchmark keys, and unknown variants are refused by name."""
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from services.store.writer import BenchmarkRow

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "acceleration.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("acceleration_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_small_run_writes_rows_the_results_store_ingests(tmp_path):
    out = tmp_path / "acceleration.json"
    script = _load_script()
    assert script.main(["--small", "--resolutions", "64", "--window-size", "2",
                        "--variants", "migration_30", "window_gathering", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["variant"] for row in rows] == ["baseline", "migration_30", "window_gathering"]
    store_keys = {field.name for field in dataclasses.fields(BenchmarkRow)}
    for row in rows:
        assert set(row) == store_keys
        BenchmarkRow(**row)
        assert row["resolution"] == 64 and row["device"] == "cpu" and row["dtype"] == "float32"
        assert row["images_per_s"] > 0 and row["latency_ms"] > 0 and row["memory_mb"] is None
    flops = {row["variant"]: row["gflops"] for row in rows}
    assert flops["migration_30"] < flops["baseline"]  # the speed comes from work removed


def test_unknown_variant_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="unknown acceleration variant 'turbo'.*window_gathering_hrpe"):
        _load_script().parse_args(["--small", "--variants", "turbo"])
