"""The restoration benchmark's methods on a small case: they run against the solver's current interfaces."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "restore.py"


@pytest.fixture(scope="module")
def restore():
    spec = importlib.util.spec_from_file_location("restore_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_case(restore, tmp_path_factory):
    # The full case's seeing, AO and noise on a 128² field of 4 frames (a spatially variant solve on 3 × 3
    # points), the truth beyond the fitted modes.
    restore.CASES["small"] = {**restore.CASES["full"], "field": 128, "n_frames": 4, "true_mode_grid": 2}
    path, _ = restore.make_case("small", tmp_path_factory.mktemp("benchmark"))
    return dict(np.load(path))


def test_the_oracles_and_the_solver_restore_the_small_case(restore, small_case):
    truth, sampling = small_case["truth"], float(small_case["sampling"])
    errors = {}
    for method in (restore.run_mean, restore.run_momfbd, restore.run_oracle, restore.run_oracle_fitted_modes):
        products, _ = method(small_case, {"n_iterations": 20} if "oracle" in method.__name__ else {})
        # Each method's better row, as the benchmark's targets use: as returned, or seen at the diffraction limit.
        rows = [products[key] for key in ("restored", "restored_diffraction") if key in products]
        errors[method.__name__] = min(restore.quality(row, truth, sampling, 16, [64])["error"] for row in rows)
    # Knowing the true wavefronts restores best, and every restoration beats the frames' mean.
    assert errors["run_oracle"] < errors["run_momfbd"] < errors["run_mean"]
    assert errors["run_oracle"] < errors["run_oracle_fitted_modes"] < errors["run_mean"]


def test_a_case_is_written_whole(restore, small_case, tmp_path):
    output = tmp_path / "restore_small.json"
    restore.benchmark_case("small", ["mean"], {"emulator": "not run"}, 16, output)
    case = json.loads(output.read_text())["cases"]["small"]
    assert case["results"]["mean"]["quality"]["error"] > 0.1  # the mean of four frames is far from the truth
    assert case["skipped"] == {"emulator": "not run"}
    assert [p.name for p in tmp_path.iterdir()] == [output.name]  # no temporary file left behind
