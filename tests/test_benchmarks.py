"""Each benchmark's --smoke mode runs and prints its table (no performance assertions)."""

import subprocess
import sys

import pytest

SMOKE_RUNS = {
    "bench_data.py": "| fit: pack, worker threads | 2 |",
    "bench_demo.py": "pipeline / in memory = ",
    "bench_loaders.py": "| ours, processes |",
    "bench_model.py": "| ours (fast_atrous=True) |",
    "gpu_check.py": "| train.py pipeline, packed,",
}
EXTRA_ARGUMENTS = {"gpu_check.py": ["--end-to-end"]}  # fit and train.py rows too


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE_RUNS))
def test_smoke_run_prints_table(script, repo):
    result = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / script), "--smoke",
         *EXTRA_ARGUMENTS.get(script, [])],
        capture_output=True, text=True, timeout=600, cwd=repo,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert SMOKE_RUNS[script] in result.stdout, result.stdout
