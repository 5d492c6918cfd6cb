"""mmvgm.predict.predictor.Predictor: records, calibration, open set, windows, batches, checkpoints."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmvgm.errors import CheckpointError, InputError
from mmvgm.predict.predictor import CHECKPOINT_ENV, NOT_ASSESSED, Predictor, resolve_checkpoint
from tests.inference_helpers import SOURCES, make_checkpoint, make_videos
from tests.media import make_frames, write_video

BASE_KEYS = {"schema", "path", "verdict", "frames", "sampling", "padded"}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {task: make_checkpoint(root / task, task) for task in ("joint", "detect", "trace")}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("videos"), 4, frames=12)


def test_joint_record_schema(ckpts, videos):
    pred = Predictor.from_checkpoint(ckpts["joint"], device="cpu")
    rec = pred.predict(videos[0])
    assert set(rec) == BASE_KEYS | {"fake_probability", "source", "best_source", "sources"}
    assert rec["path"] == str(videos[0]) and rec["frames"] == 8 and rec["sampling"] == "consecutive"
    assert rec["padded"] == 0
    assert 0.0 <= rec["fake_probability"] <= 1.0
    assert rec["verdict"] == ("fake" if rec["fake_probability"] >= 0.5 else "real")
    probs = list(rec["sources"].values())
    assert set(rec["sources"]) == set(SOURCES)
    assert probs == sorted(probs, reverse=True) and math.isclose(sum(probs), 1.0, abs_tol=1e-4)
    assert rec["source"] == {"label": next(iter(rec["sources"])), "probability": probs[0]}


def test_predictor_matches_the_one_path(ckpts, videos):
    """Predictor = read_clip -> transform -> model -> temperature-scaled sigmoid/softmax."""
    from mmvgm.data.transforms import VideoTransform
    from mmvgm.checkpoint.files import load_checkpoint
    from mmvgm.io import read_clip

    model, meta = load_checkpoint(ckpts["joint"])
    clip = read_clip(videos[1], num_frames=8, sampling="consecutive")
    x = VideoTransform.from_config(meta.preprocess)(torch.from_numpy(np.asarray(clip)))[None]
    with torch.no_grad():
        out = model(x)
    pred = Predictor.from_checkpoint(ckpts["joint"], device="cpu")
    pred.calibration.temperature = 2.0
    pred.calibration.trace_temperature = 0.5
    rec = pred.predict(videos[1])
    assert rec["fake_probability"] == pytest.approx(torch.sigmoid(out["detect"][0] / 2.0).item(), abs=1e-5)
    expected = torch.softmax(out["trace"][0] / 0.5, 0).numpy()
    for label, p in zip(SOURCES, expected):
        assert rec["sources"][label] == pytest.approx(float(p), abs=1e-5)


def test_threshold_decides_the_verdict(ckpts, videos):
    pred = Predictor.from_checkpoint(ckpts["detect"], device="cpu")
    rec = pred.predict(videos[0])
    assert set(rec) == BASE_KEYS | {"fake_probability"}
    pred.calibration.threshold = 0.0
    assert pred.predict(videos[0])["verdict"] == "fake"
    pred.calibration.threshold = 1.0 + 1e-9
    assert pred.predict(videos[0])["verdict"] == "real"


def test_trace_only_checkpoint(ckpts, videos):
    rec = Predictor.from_checkpoint(ckpts["trace"], device="cpu").predict(videos[0])
    assert "fake_probability" not in rec
    assert rec["verdict"] == NOT_ASSESSED and set(rec["sources"]) == set(SOURCES)


def test_open_set_unknown(tmp_path, videos):
    high = make_checkpoint(tmp_path / "high", "joint", open_set_threshold=0.999)
    low = make_checkpoint(tmp_path / "low", "joint", open_set_threshold=1e-6)
    rec = Predictor.from_checkpoint(high, device="cpu").predict(videos[0])
    assert rec["source"] == {"label": "unknown", "probability": None} and len(rec["sources"]) == len(SOURCES)
    assert rec["best_source"] == {"label": next(iter(rec["sources"])), "probability": max(rec["sources"].values())}
    assert rec.source.unknown and rec.best_source.label in SOURCES
    known = Predictor.from_checkpoint(low, device="cpu").predict(videos[0])
    assert known["source"] == known["best_source"] and known["source"]["label"] in SOURCES


def test_short_video_is_padded(ckpts, tmp_path):
    short = write_video(tmp_path / "short.mp4", make_frames(3, 40, 48))
    rec = Predictor.from_checkpoint(ckpts["joint"], device="cpu").predict(short)
    assert rec["padded"] == 5 and rec["frames"] == 8


def test_frames_and_sampling_override(ckpts, tmp_path):
    video = write_video(tmp_path / "long.mp4", make_frames(30, 40, 48))
    pred = Predictor.from_checkpoint(ckpts["detect"], device="cpu")
    rec = pred.predict(video, sampling="uniform")
    assert rec["sampling"] == "uniform" and rec["padded"] == 0
    with pytest.raises(InputError):
        pred.predict(video, frames=0)


def test_windows_are_spread_and_averaged(ckpts, tmp_path):
    video = write_video(tmp_path / "long.mp4", make_frames(40, 40, 48, seed=3))
    pred = Predictor.from_checkpoint(ckpts["joint"], device="cpu")
    rec = pred.predict(video, windows=3)
    starts = [w["start"] for w in rec["windows"]]
    assert starts == [0, 16, 32] and rec["aggregation"] == "mean"
    assert rec["windows"][-1]["end"] == 39
    mean = np.mean([w["fake_probability"] for w in rec["windows"]])
    assert rec["fake_probability"] == pytest.approx(mean, abs=1e-5)
    for label in SOURCES:
        assert rec["sources"][label] == pytest.approx(
            np.mean([w["sources"][label] for w in rec["windows"]]), abs=1e-5)
    # each window is the same as scoring that clip alone
    single = pred.scorer.verdicts([str(video)], pred.logits(pred.load_clip(video, 8, "consecutive", start=16)[0][None]),
                                  [0], 8, "consecutive")[0]
    assert rec["windows"][1]["fake_probability"] == pytest.approx(single["fake_probability"], abs=1e-5)
    with pytest.raises(InputError):
        pred.predict(video, windows=0)
    for bad in ("stride:x", "stride:0", "sometimes"):
        with pytest.raises(InputError, match="sampling"):
            pred.predict(video, sampling=bad, windows=2)


def test_predict_batch_reports_bad_files_and_keeps_order(ckpts, videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    missing = tmp_path / "missing.mp4"
    pred = Predictor.from_checkpoint(ckpts["joint"], device="cpu")
    paths = [videos[0], bad, videos[1], missing, videos[2]]
    out = pred.predict_batch(paths, batch_size=2)
    assert [r["path"] for r in out] == [str(p) for p in paths]
    assert "error" in out[1] and "error" in out[3] and set(out[1]) == {"schema", "path", "error"}
    for rec, path in zip([out[0], out[2], out[4]], [videos[0], videos[1], videos[2]]):
        assert rec["fake_probability"] == pytest.approx(pred.predict(path)["fake_probability"], abs=1e-5)
    with pytest.raises(InputError):
        pred.predict(bad)


def test_stream_with_workers_equals_in_process(ckpts, videos):
    pred = Predictor.from_checkpoint(ckpts["joint"], device="cpu")
    paths = [str(v) for v in videos]
    a = [r for b in pred.stream(paths, batch_size=3, workers=0) for r in b]
    b = [r for b in pred.stream(paths, batch_size=3, workers=2) for r in b]
    assert [r["path"] for r in a] == paths
    assert [r["fake_probability"] for r in a] == pytest.approx([r["fake_probability"] for r in b], abs=1e-6)


@pytest.mark.parametrize("workers", [0, 2])
def test_decode_then_score_a_batch_equals_predict_batch(ckpts, videos, tmp_path, workers):
    """What a service does (decode a batch, score it while the next decodes) gives what
    ``predict_batch`` gives, bad files included, in order; 3 files over 2 workers split 2 + 1."""
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    paths = [str(videos[0]), str(bad), str(videos[1])]
    with Predictor.from_checkpoint(ckpts["joint"], device="cpu", workers=workers) as pred:
        decoded = pred.decode_batch(paths)
        assert [it.path for it in decoded.items] == paths and decoded.pixels.shape[0] == 2
        scored = pred.score_batch(decoded)
        expected = pred.predict_batch(paths, batch_size=3)
        assert pred.score_batch(pred.decode_batch([])) == []
    assert [v.path for v in scored] == paths and scored[1].error and not scored[0].error
    for got, want in zip(scored, expected):
        assert got.to_json().keys() == want.to_json().keys()
        if want.ok:
            assert got.fake_probability == pytest.approx(want.fake_probability, abs=1e-6)


def test_checkpoint_resolution(monkeypatch, tmp_path, ckpts):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    with pytest.raises(CheckpointError, match="mmvgm demo"):
        resolve_checkpoint(None)
    with pytest.raises(CheckpointError, match="not found"):
        Predictor.from_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError):
        Predictor.from_checkpoint(tmp_path / "empty")
    monkeypatch.setenv(CHECKPOINT_ENV, str(ckpts["detect"]))
    assert Predictor.from_checkpoint().task == "detect"


def test_lazy_export():
    import mmvgm

    assert mmvgm.Predictor is Predictor


def test_label_set_mapping_as_train_stores_it(ckpts, videos):
    """``engine.train`` stores ``LabelSet.to_dict()``: names in order, display names kept."""
    from mmvgm.data.labels import LabelSet
    from mmvgm.checkpoint.files import load_checkpoint

    model, meta = load_checkpoint(ckpts["joint"])
    display = ["Real video", "LaVie", "Show-1", "SVD-XT"]
    meta = meta.replace(labels=LabelSet("demo+real", ["real", *SOURCES], display).to_dict())
    pred = Predictor(model, meta, device="cpu")
    assert pred.labels == ["real", *SOURCES] and pred.source_labels == list(SOURCES)
    assert pred.display == dict(zip(["real", *SOURCES], display))
    assert set(pred.predict(videos[0])["sources"]) == set(SOURCES)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_stream_keeps_a_batch_in_flight_and_matches_cpu(ckpts, videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    paths = [str(videos[0]), str(bad), *[str(v) for v in videos[1:]]]
    cpu = Predictor.from_checkpoint(ckpts["joint"], device="cpu").predict_batch(paths, batch_size=2)
    gpu = Predictor.from_checkpoint(ckpts["joint"], device="cuda").predict_batch(paths, batch_size=2)
    assert [r["path"] for r in gpu] == paths and "error" in gpu[1]
    for a, b in zip(cpu, gpu):
        if "error" not in a:  # bf16 autocast on CUDA
            assert b["fake_probability"] == pytest.approx(a["fake_probability"], abs=2e-2)


def test_stream_batches_keep_their_size_and_order_with_chunked_workers(ckpts, videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    pred = Predictor.from_checkpoint(ckpts["joint"], device="cpu")
    paths = [str(videos[0]), str(bad), *[str(v) for v in videos[1:]]] * 2  # 10 files
    batches = list(pred.stream(paths, batch_size=4, workers=2))  # chunks of 2 per worker
    assert [len(b) for b in batches] == [4, 4, 2]
    flat = [r for b in batches for r in b]
    assert [r["path"] for r in flat] == paths and "error" in flat[1] and "error" in flat[6]
    alone = pred.predict_batch(paths, batch_size=4, workers=0)
    assert [r.get("fake_probability") for r in flat] == pytest.approx([r.get("fake_probability") for r in alone],
                                                                     abs=1e-6)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_stream_workers_start_from_a_fork_server_or_spawned(tmp_path, monkeypatch, method):
    """Workers that do not inherit this process (Python 3.14's default on Linux is forkserver):
    the dataset and transform travel pickled, and every file is scored in order."""
    from mmvgm.runtime import WORKER_START_ENV

    monkeypatch.setenv(WORKER_START_ENV, method)
    videos = [str(p) for p in make_videos(tmp_path / "v", 5, frames=10)]
    bad = tmp_path / "v" / "bad.mp4"
    bad.write_bytes(b"")
    predictor = Predictor.from_checkpoint(make_checkpoint(tmp_path / "ckpt", "joint"), device="cpu")
    records = predictor.predict_batch(videos + [str(bad)], batch_size=2, workers=2)
    assert [r["path"] for r in records] == videos + [str(bad)]
    assert all("fake_probability" in r for r in records[:-1]) and "error" in records[-1]
    in_process = predictor.predict_batch(videos, batch_size=2, workers=0)
    assert [r["fake_probability"] for r in records[:-1]] == pytest.approx(
        [r["fake_probability"] for r in in_process], abs=1e-5)


# --- hub repos: from_pretrained / save_pretrained ---------------------------------------------

def test_save_pretrained_then_from_pretrained_through_a_hub_cache(ckpts, videos, tmp_path):
    from huggingface_hub import ModelCard

    from tests.hf_cache import add_repo

    original = Predictor.from_checkpoint(ckpts["joint"])
    (tmp_path / "metrics.json").write_text('{"split": "test", "n": 5, "detect": {"auc": 0.625}}')
    saved = original.save_pretrained(tmp_path / "shared", metrics=tmp_path / "metrics.json", name="org/joint")
    assert sorted(p.name for p in saved.iterdir()) == ["README.md", "metrics.json", "mmvgm.yaml", "model.safetensors"]
    assert "| detect.auc | 0.6250 |" in ModelCard.load(saved / "README.md").text
    add_repo(tmp_path / "cache", "org/joint", saved)
    add_repo(tmp_path / "cache", "org/joint", saved, revision="v1")
    for loaded in (Predictor.from_pretrained(saved), Predictor.from_pretrained("org/joint", cache_dir=tmp_path / "cache"),
                   Predictor.from_pretrained("org/joint", revision="v1", cache_dir=tmp_path / "cache")):
        a, b = original.predict(videos[0]), loaded.predict(videos[0])
        assert a.fake_probability == pytest.approx(b.fake_probability, abs=1e-6)
        assert a.to_json()["sources"] == pytest.approx(b.to_json()["sources"], abs=1e-6)


def test_from_pretrained_of_an_id_not_cached_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="hf download org/absent"):
        Predictor.from_pretrained("org/absent", cache_dir=tmp_path)
    with pytest.raises(CheckpointError, match="not a hub id"):
        Predictor.from_pretrained(tmp_path / "nowhere", revision="v1")


def test_loading_refuses_a_pickle_in_place_of_safetensors(ckpts, tmp_path):
    import shutil

    bad = tmp_path / "pickled"
    shutil.copytree(ckpts["joint"], bad)
    torch.save({"w": torch.zeros(1)}, bad / "model.safetensors")  # a zip pickle under the safetensors name
    with pytest.raises(CheckpointError, match="cannot read model.safetensors"):
        Predictor.from_pretrained(bad)
