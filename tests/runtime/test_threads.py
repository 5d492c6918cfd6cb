"""The CPU core split between a training model and its decoding workers: counted, never timed."""
import pytest
import torch

import mmvgm.runtime.threads as threads_module
from mmvgm.runtime.threads import (decoded_pixels_per_clip, plan_cpu_split, step_flops_per_clip,
                                    workers_need_cores)
from mmvgm.models.registry import resolve_backbone_config
from tests.media import make_frames, write_video

CPU = torch.device("cpu")


def _model_cfg(backbone: str, **overrides) -> dict:
    return {"backbone": resolve_backbone_config(backbone, **overrides), "task": "detect"}


@pytest.fixture()
def video(tmp_path):
    return str(write_video(tmp_path / "v.mp4", make_frames(12, 48, 64)))


@pytest.fixture()
def four_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def test_flops_are_counted_on_the_meta_device_without_reading_weights(tmp_path):
    cfg = _model_cfg("videomae_tiny")
    flops = step_flops_per_clip(cfg, (8, 3, 32, 32))
    assert flops is not None and flops > 0
    cfg["backbone"]["weights"] = str(tmp_path / "missing")  # would be a CheckpointError if read
    assert step_flops_per_clip(cfg, (8, 3, 32, 32)) == flops
    bigger = step_flops_per_clip(_model_cfg("videomae_tiny", size=64), (8, 3, 64, 64))
    assert bigger > 3 * flops  # 4x the tokens
    assert step_flops_per_clip(cfg, (8, 3, 33, 31)) is None  # the model cannot take it: not counted


def test_decoded_pixels_follow_the_sampling(tmp_path, video):
    assert decoded_pixels_per_clip([video], 8, "consecutive") == 8 * 64 * 48
    assert decoded_pixels_per_clip([video], 4, "uniform") == 12 * 64 * 48  # decoded up to the last frame
    assert decoded_pixels_per_clip([video], 4, "stride:2") == 7 * 64 * 48
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert decoded_pixels_per_clip([str(bad), video], 8, "consecutive") == 8 * 64 * 48
    assert decoded_pixels_per_clip([str(bad)], 8, "consecutive") is None


def test_the_two_measured_regimes():
    # videomae_tiny 16x64 from 80x80 videos: decoding is ~0.8 core of 2 -> workers keep their cores
    assert workers_need_cores(step_flops=3 * 0.055e9, decoded_pixels=16 * 80 * 80, cores=2)
    # VideoMAE-base 8x112 from 128x128 videos: decoding is ~0.1% of the work -> model on every core
    assert not workers_need_cores(step_flops=3 * 35e9, decoded_pixels=8 * 128 * 128, cores=2)


def test_plan_keeps_worker_cores_for_a_small_model(four_cores, video):
    split = plan_cpu_split(CPU, 2, _model_cfg("videomae_tiny"), (8, 3, 32, 32), [video], "consecutive")
    assert split.threads == 2 and "decoding is a large share" in split.reason


def test_plan_gives_a_large_model_every_core(four_cores, video):
    split = plan_cpu_split(CPU, 2, _model_cfg("videomae", frames=8, size=112), (8, 3, 112, 112), [video],
                           "consecutive")
    assert split.threads == 4 and "keeps all 4" in split.reason


def test_plan_without_counts_keeps_worker_cores(four_cores, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    split = plan_cpu_split(CPU, 1, _model_cfg("videomae_tiny"), (8, 3, 32, 32), [str(bad)], "consecutive")
    assert split.threads == 3 and "could not be counted" in split.reason


def test_plan_leaves_threads_alone(four_cores, monkeypatch, video):
    args = (_model_cfg("videomae_tiny"), (8, 3, 32, 32), [video], "consecutive")
    assert plan_cpu_split(CPU, 0, *args) is None  # no workers
    assert plan_cpu_split(torch.device("cuda"), 2, *args) is None  # not a CPU loop
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert plan_cpu_split(CPU, 2, *args) is None  # the user chose


def test_train_restores_the_thread_count_even_when_it_fails(four_cores, monkeypatch, tmp_path):
    from mmvgm.engine import train as train_module
    from mmvgm.errors import InputError

    def fails_midway(*args, **kwargs):
        torch.set_num_threads(1)  # as a CPU split does
        raise InputError("boom")

    monkeypatch.setattr(train_module, "_train", fails_midway)
    with pytest.raises(InputError):
        train_module.train({})
    assert torch.get_num_threads() == 4
