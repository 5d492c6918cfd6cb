"""Every tiny config learns an easy signal, and a run whose loss sits at chance says so.

The signal: textured, panning scenes with sensor grain (real) against other such scenes
Gaussian-blurred with sigma 3 (fake), each clip its own scene, written as H.264 like real footage.
A CNN separates them in an epoch; the tiny transformers used to stay at chance (ln 2) on it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mmvgm.engine.train import chance_loss, chance_warning, load_train_config, train
from tests.media import write_video

TINY_BACKBONES = ("videomae_tiny", "xclip_tiny", "i3d_r50_tiny", "timm_tiny")
PER_CLASS = 60  # fewer leave the tiny transformers too few clips to find the cue over clip content


def textured_scene(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """uint8 (T,S,S,3): coarse-to-fine colour texture with a few hard-edged blocks, a slow camera
    pan over it and per-frame grain, like real footage."""
    import cv2

    big = size * 2
    texture = np.zeros((big, big, 3), np.float32)
    for cells, weight in ((4, 0.5), (12, 0.3), (big // 2, 0.2)):
        coarse = rng.random((cells, cells, 3)).astype(np.float32)
        texture += weight * cv2.resize(coarse, (big, big), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        x, y = rng.integers(0, big, 2)
        w, h = rng.integers(4, big // 3, 2)
        texture[y:y + h, x:x + w] = rng.random(3) * 0.8 + 0.1
    (dx, dy), (x0, y0) = rng.uniform(-2, 2, 2), rng.integers(0, size // 2, 2)
    clip = []
    for i in range(frames):
        x, y = int(np.clip(x0 + dx * i, 0, size)), int(np.clip(y0 + dy * i, 0, size))
        clip.append(texture[y:y + size, x:x + size] + rng.normal(0, 0.03, (size, size, 3)))
    return (np.clip(np.stack(clip), 0, 1) * 255).round().astype(np.uint8)


def write_blur_dataset(root: Path, per_class: int = PER_CLASS, size: int = 32, frames: int = 8,
                       sigma: float = 3.0, seed: int = 0) -> Path:
    """root/real/*.mp4 (sharp scenes) and root/fake/*.mp4 (other scenes, blurred)."""
    import cv2

    for i in range(per_class):
        write_video(root / "real" / f"real_{i:03d}.mp4",
                    textured_scene(np.random.default_rng([seed, i, 0]), frames, size))
        blurred = [cv2.GaussianBlur(f, (0, 0), sigma)
                   for f in textured_scene(np.random.default_rng([seed, i, 1]), frames, size)]
        write_video(root / "fake" / f"fake_{i:03d}.mp4", np.stack(blurred))
    return root


@pytest.fixture(scope="module")
def blur_data(tmp_path_factory) -> Path:
    return write_blur_dataset(tmp_path_factory.mktemp("blur") / "data")


def _tiny_detect(data: Path, out: Path, **over) -> dict:
    cfg = {"data": str(data), "out": str(out), "progress": False, "cpu": True,
           "split": {"ratios": [0.7, 0.3], "seed": 2024, "duplicates": "warn"}}
    cfg.update(over)
    return load_train_config("tiny_detect", cfg)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", TINY_BACKBONES)
def test_each_tiny_config_learns_sharp_against_blurred(backbone, blur_data, tmp_path):
    """The shipped tiny_detect run, with each tiny backbone, tells held-out blurred clips from sharp ones."""
    result = train(_tiny_detect(blur_data, tmp_path / backbone, backbone=backbone))
    assert result.best_metric == "auc" and result.best_value > 0.8, result.history
    assert result.history[-1]["train_loss"] < 0.9 * math.log(2), result.history
    assert not any(r["train_warnings"] for r in result.history)


def test_chance_loss_is_the_entropy_of_the_train_labels():
    assert chance_loss("detect", ["real", "fake"] * 5, ["real", "fake"]) == pytest.approx(math.log(2))
    assert chance_loss("detect", ["real"] + ["fake"] * 3, ["real", "fake"]) == \
        pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert chance_loss("trace", ["a", "b", "c"] * 2, ["a", "b", "c"]) == pytest.approx(math.log(3))
    # joint: real/fake, plus the source among the fakes
    assert chance_loss("joint", ["real"] * 4 + ["a", "b"] * 2, ["real", "a", "b"]) == pytest.approx(2 * math.log(2))
    assert chance_loss("detect", [], ["real", "fake"]) is None


def test_chance_warning_needs_several_epochs_that_never_get_below_chance():
    ln2 = math.log(2)
    assert chance_warning([0.70, 0.69, 0.687], ln2) is not None       # at chance
    assert "3 epochs" in chance_warning([0.9, 0.70, 0.69, 0.687], ln2)
    assert chance_warning([0.760, 0.757, 0.754], ln2) is not None     # flat above it (lr too small)
    assert chance_warning([0.69, 0.687], ln2) is None                 # not yet several epochs
    assert chance_warning([0.80, 0.79, 0.68], ln2) is None            # still falling from the start
    assert chance_warning([0.69, 0.60, 0.687], ln2) is None           # it got below in between
    assert chance_warning([0.69, 0.69, float("nan")], ln2) is None
    assert chance_warning([0.69] * 3, None) is None


def test_a_run_at_chance_warns_once_and_keeps_it_in_the_history(tmp_path, capsys):
    """Real and fake folders hold the same video: nothing can be learned, the loss sits at ln 2."""
    from tests.media import make_frames

    frames = make_frames(8, 32, 32, seed=1)
    for label in ("real", "fake"):
        for i in range(10):
            write_video(tmp_path / "data" / label / f"{label}_{i}.mp4", frames)
    result = train(_tiny_detect(tmp_path / "data", tmp_path / "run", epochs=5,
                                split={"ratios": [0.8, 0.2], "seed": 2024, "duplicates": "off"}))
    warnings = [r["train_warnings"] for r in result.history]
    assert warnings[:2] == [[], []] and "chance level (0.693" in " ".join(warnings[-1]), result.history
    stored = [json.loads(line)["train_warnings"]
              for line in (result.out_dir / "history.jsonl").read_text().splitlines()]
    assert stored == warnings
    assert capsys.readouterr().err.count("warning: training: the training loss has not dropped below chance") == 1
