"""mmvgm.demo and ``mmvgm demo``: synthetic sources, and the whole offline run end to end."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from mmvgm.demo import DISCLAIMER, SOURCES, make_dataset, synthetic_frames


def test_synthetic_sources_are_deterministic_and_distinct():
    a = synthetic_frames("gen-blocks", seed=3)
    assert a.shape == (16, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, synthetic_frames("gen-blocks", seed=3))
    assert not np.array_equal(a, synthetic_frames("gen-blocks", seed=4))
    stats = {}
    for source in SOURCES:
        clips = np.stack([synthetic_frames(source, seed=s).astype(np.float32) for s in range(6)])
        flicker = np.abs(np.diff(clips.mean(axis=(2, 3, 4)), axis=1)).mean()   # global brightness jumps
        grain = np.abs(np.diff(clips, axis=3)).mean()                          # pixel-to-pixel detail
        stats[source] = (flicker, grain)
    assert stats["gen-flicker"][0] > 5 * max(stats[s][0] for s in SOURCES if s != "gen-flicker")
    assert stats["real"][1] > 2 * stats["gen-smooth"][1]


def test_make_dataset_layout_is_readable(tmp_path):
    from mmvgm.io import read_clip

    paths = make_dataset(tmp_path, per_source=2, frames=8, size=32)
    assert sorted(paths) == sorted(SOURCES)
    for source in SOURCES:
        assert sorted(p.name for p in (tmp_path / source).iterdir()) == [f"{source}-000.mp4", f"{source}-001.mp4"]
    clip = read_clip(paths["gen-smooth"][0], num_frames=8)
    assert clip.shape == (8, 32, 32, 3) and clip.padded == 0


def test_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "not an earlier demo" in result.stderr
    assert (tmp_path / "mine.txt").read_text() == "user data"


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    from mmvgm.predict.predictor import Predictor

    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "DEMONSTRATION on synthetic media" in text and "trained on real data" in text
    assert "mmvgm train --backbone videomae --task joint" in text
    assert f"checkpoint: {out / 'checkpoint'}" in text
    for source in SOURCES:
        assert source in text
    predictor = Predictor.from_checkpoint(out / "checkpoint", device="cpu")
    assert predictor.task == "joint" and predictor.source_labels == [s for s in SOURCES if s != "real"]
    assert predictor.meta.synthetic  # and so every verdict it gives carries the warning
    assert "synthetic media" in predictor.predict(out / "examples" / "real.mp4")["warning"]
    records = {s: predictor.predict(out / "examples" / f"{s}.mp4") for s in SOURCES}
    # the tiny model learned something real: the real example is the least fake-looking one
    p_fake = {s: r["fake_probability"] for s, r in records.items()}
    assert p_fake["real"] < min(p for s, p in p_fake.items() if s != "real"), p_fake
    assert not (out / "data").exists()  # synthetic training data lives in a deleted temp dir
    assert DISCLAIMER.split(":")[0] in text
