"""The layout's promises: prediction never imports the training package, and mmvgm uses other
libraries' public APIs only (the private internals it once used stay gone)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmvgm"

# Private internals of torch, concurrent.futures, accelerate and transformers that mmvgm used once.
FORBIDDEN = {
    r"\._iterator\b": "torch DataLoader's iterator",
    r"\._workers\b": "torch DataLoader's worker list",
    r"_set_worker_pids|_remove_worker_pids|_worker_pids_set": "torch's SIGCHLD registry",
    r"_shutdown_workers": "torch DataLoader shutdown",
    r"_threads_queues": "concurrent.futures' thread registry",
    r"_reset_state": "accelerate's state reset",
    r"get_sinusoid_encoding_table\s*=": "patching transformers' VideoMAE table",
    r"signal_handling": "torch.utils.data._utils",
}


@pytest.mark.parametrize("pattern", sorted(FORBIDDEN))
def test_no_private_internals_of_other_libraries(pattern):
    hits = [f"{path.relative_to(PACKAGE.parent)}:{n}" for path in sorted(PACKAGE.rglob("*.py"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            if re.search(pattern, line)]
    assert not hits, f"{FORBIDDEN[pattern]} used at {hits}"


def test_prediction_does_not_import_the_training_package():
    code = ("import sys; import mmvgm.predict.predictor, mmvgm.predict.scan, mmvgm.predict.explain, "
            "mmvgm.predict.pool, mmvgm.predict.scoring, mmvgm.checkpoint.files, mmvgm.cli.trace, mmvgm.cli.scan, "
            "mmvgm.serve.app, mmvgm.cli.serve; "
            "bad = sorted(m for m in sys.modules if m.startswith('mmvgm.engine')); "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
