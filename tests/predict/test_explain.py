"""mmvgm.predict.explain: gradient x input / SmoothGrad saliency and the PNG grid."""
from __future__ import annotations

import numpy as np
import pytest
from mmvgm.errors import InputError
from mmvgm.predict.explain import explain, saliency_map
from mmvgm.predict.predictor import Predictor
from tests.inference_helpers import make_checkpoint, spy_render
from tests.media import make_frames, write_video


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    video = write_video(root / "clip.mp4", make_frames(10, 40, 48, seed=1))
    joint = Predictor.from_checkpoint(make_checkpoint(root / "joint", "joint"), device="cpu")
    trace = Predictor.from_checkpoint(make_checkpoint(root / "trace", "trace"), device="cpu")
    return root, video, joint, trace


def _reference(pred, pixels, head, index):
    """Input x gradient written out by hand: |sum_c x * d logit / d x|, scaled by its 99th pct."""
    x = pred.transform.normalize(pixels[None]).requires_grad_(True)
    out = pred.model(x)[head]
    score = out.reshape(-1)[0] if index is None else out[0, index]
    score.backward()
    sal = (x.grad * x).sum(dim=2).abs()[0].detach().numpy()
    return np.clip(sal / np.percentile(sal, 99), 0, 1)


def test_grad_x_input_detect_matches_definition(setup):
    _, video, joint, _ = setup
    pixels, _ = joint.load_clip(video)
    sal, name = saliency_map(joint, pixels)
    assert name == "detect" and sal.shape == (8, 32, 32) and sal.dtype == np.float32
    np.testing.assert_allclose(sal, _reference(joint, pixels, "detect", None), atol=1e-4)
    assert sal.max() == pytest.approx(1.0) and sal.min() >= 0.0 and sal.std() > 0


def test_trace_target_is_top_source_or_named(setup):
    _, video, _, trace = setup
    pixels, _ = trace.load_clip(video)
    top = trace.predict(video)["source"]["label"]
    sal, name = saliency_map(trace, pixels)
    assert name == top
    index = trace.source_labels.index("svd-xt")
    sal2, name2 = saliency_map(trace, pixels, target="svd-xt")
    assert name2 == "svd-xt"
    np.testing.assert_allclose(sal2, _reference(trace, pixels, "trace", index), atol=1e-4)
    with pytest.raises(InputError, match="unknown target"):
        saliency_map(trace, pixels, target="nope")


def test_detect_checkpoint_explains_only_detect(setup):
    root, video, _, _ = setup
    detect = Predictor.from_checkpoint(make_checkpoint(root / "detect", "detect"), device="cpu")
    pixels, _ = detect.load_clip(video)
    assert saliency_map(detect, pixels)[1] == "detect"
    with pytest.raises(InputError, match="only explain"):
        saliency_map(detect, pixels, target="lavie")


def test_smoothgrad_is_seeded_and_differs(setup):
    _, video, joint, _ = setup
    pixels, _ = joint.load_clip(video)
    plain, _ = saliency_map(joint, pixels)
    a, _ = saliency_map(joint, pixels, method="smoothgrad", samples=4, seed=1)
    b, _ = saliency_map(joint, pixels, method="smoothgrad", samples=4, seed=1)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - plain).mean() > 1e-4
    with pytest.raises(InputError, match="unknown saliency method"):
        saliency_map(joint, pixels, method="attention")


def test_explain_writes_png_grid(setup):
    from PIL import Image

    root, video, joint, _ = setup
    result = explain(joint, video, root / "out" / "sal.png")
    assert result.path.is_file() and result.frames.shape == (8, 32, 32, 3)
    image = Image.open(result.path)
    assert image.format == "PNG" and image.size[0] > image.size[1] > 100  # 8 columns, 1 row
    assert not list((root / "out").glob(".*tmp*"))
    with pytest.raises(InputError, match="PNG"):
        explain(joint, video, root / "sal.jpg")


def test_render_leaves_the_matplotlib_backend_alone(tmp_path, monkeypatch):
    import matplotlib

    from mmvgm.predict.explain import render

    monkeypatch.setitem(matplotlib.rcParams, "backend", "svg")  # e.g. a notebook's backend
    render(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8), np.float32), tmp_path / "s.png")
    assert (tmp_path / "s.png").is_file() and matplotlib.rcParams["backend"] == "svg"


def test_png_labels_the_video_frame_numbers_and_times(setup, monkeypatch):
    """The grid showed "frame 0...7" for a window at frames 41-48: each frame is now labelled with
    its index in the video and its time, and the title names the window."""
    root, _, joint, _ = setup
    video = write_video(root / "long.mp4", make_frames(60, 40, 48, seed=2), fps=25)
    seen = spy_render(monkeypatch)
    result = explain(joint, video, root / "w.png", start=41, window="window 3 of 4, most likely fake")
    assert result.indices == tuple(range(41, 49)) and result.fps == pytest.approx(25.0)
    assert seen["labels"][0] == "frame 41\n1.64 s" and seen["labels"][-1] == "frame 48\n1.92 s"
    assert "frames 41–48, 1.64–1.92 s (window 3 of 4, most likely fake)" in seen["title"]
    assert "long.mp4" in seen["title"]


def test_frame_labels_and_clip_title():
    from mmvgm.predict.explain import clip_title, frame_labels

    assert frame_labels([3, 4], None) == ["frame 3", "frame 4"]  # a frame directory: no rate
    assert frame_labels([8, 9, 9], 10.0, padded=1) == ["frame 8\n0.80 s", "frame 9\n0.90 s",
                                                       "frame 9\n0.90 s (repeat)"]
    assert clip_title([0, 36, 71, 107], 25.0) == "frames 0–107, 0.00–4.28 s (4 sampled)"
    assert clip_title([8, 9, 9, 9], 10.0, padded=2) == "frames 8–9, 0.80–0.90 s (last frame repeated 2x)"
    assert clip_title([1500, 1501], 25.0) == "frames 1500–1501, 1:00.00–1:00.04"
    assert clip_title([5], None, window="window 1 of 1") == "frame 5 (window 1 of 1)"


def test_check_output_refuses_what_cannot_be_written(tmp_path):
    from mmvgm.predict.explain import check_output

    assert check_output(tmp_path / "sal.PNG") == tmp_path / "sal.PNG"  # the suffix in any case
    assert list(tmp_path.iterdir()) == []  # the write check leaves nothing behind
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.png").mkdir()
    for out, why in ((tmp_path / "sal.jpg", "PNG"), (tmp_path / "no" / "dir" / "x.png", "no such folder"),
                     (tmp_path / "file" / "x.png", "not a folder"), (tmp_path / "dir.png", "is a folder"),
                     ("/proc/x.png", "writable|cannot create files")):
        with pytest.raises(InputError, match=why):
            check_output(out)
    assert not (tmp_path / "no").exists()


def test_render_write_failure_is_one_input_error(tmp_path):
    from mmvgm.predict.explain import render

    frames, sal = np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8), np.float32)
    with pytest.raises(InputError, match="cannot write the PNG"):
        render(frames, sal, "/proc/x.png")  # was an unexpected FileNotFoundError
    with pytest.raises(InputError, match="2 frames"):
        render(frames, sal, tmp_path / "s.png", labels=["frame 4"])
