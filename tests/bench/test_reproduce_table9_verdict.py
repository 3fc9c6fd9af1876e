"""benchmarks/reproduce_table9.py's verdict: the order it checks, and what it names when it fails."""
import importlib.util
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reproduce_table9.py"
_spec = importlib.util.spec_from_file_location("reproduce_table9_benchmark", SCRIPT)
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


def test_pretrained_rows_above_none_pass_and_mfm_below_mim_is_not_a_failure():
    passed, line = benchmark.verdict({"none": 45.5, "conv": 58.0, "mim": 62.5, "mim_mfm": 55.5})
    assert passed and "mim 62.5" in line


def test_a_pretrained_row_at_or_below_none_fails_naming_it():
    passed, line = benchmark.verdict({"none": 50.0, "mim": 50.0, "mim_mfm": 61.0})
    assert not passed and "['mim']" in line


def test_a_row_without_a_number_fails_naming_it():
    passed, line = benchmark.verdict({"none": 45.0, "mim": math.nan, "mim_mfm": 60.0})
    assert not passed and "['mim']" in line
