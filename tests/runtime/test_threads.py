"""The thread policy: training's counted CPU split (never timed), the fixed count of
``--threads`` / ``MMVGM_THREADS``, decoder and worker threads, and the loop that restores."""
import pytest
import torch

import mmvgm.runtime.threads as threads_module
from mmvgm.errors import InputError
from mmvgm.runtime.threads import (ThreadLoop, ThreadPolicy, TrainingWork, decoded_pixels_per_clip,
                                   decoder_threads, decoding_worker_init, plan_cpu_split, resolve_threads,
                                   step_flops_per_clip, worker_torch_threads, workers_need_cores)
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
    monkeypatch.delenv("MMVGM_THREADS", raising=False)
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


def _decode_bound(loop: ThreadLoop) -> None:
    for _ in range(9):  # start-up, then two windows of waiting
        loop.record(waited=1.0, computed=0.01)


def test_mmvgm_threads_fixes_the_count_and_disables_adaptation(four_cores, monkeypatch):
    monkeypatch.setenv("MMVGM_THREADS", "3")
    policy = resolve_threads(CPU, 2)
    assert policy.compute == 3 and not policy.adaptive and "MMVGM_THREADS" in policy.reason
    with policy.loop() as loop:
        assert torch.get_num_threads() == 3
        _decode_bound(loop)  # waiting on the workers would leave them cores: not with a fixed count
        assert loop.shared is None and torch.get_num_threads() == 3
    assert torch.get_num_threads() == 4
    assert resolve_threads(torch.device("cuda"), 0).compute == 3  # on any device


def test_a_fixed_count_skips_the_counted_split(four_cores, monkeypatch, video):
    def not_counted(*args, **kwargs):
        raise AssertionError("a fixed count must not be second-guessed")

    monkeypatch.setattr(threads_module, "plan_cpu_split", not_counted)
    work = TrainingWork(_model_cfg("videomae_tiny"), (8, 3, 32, 32), [video])
    assert resolve_threads(CPU, 2, 1, training=work).compute == 1
    monkeypatch.setenv("MMVGM_THREADS", "2")
    assert resolve_threads(CPU, 2, training=work).compute == 2


def test_training_default_is_the_counted_split(four_cores, video):
    work = TrainingWork(_model_cfg("videomae_tiny"), (8, 3, 32, 32), [video], "consecutive")
    policy = resolve_threads(CPU, 2, training=work)
    assert policy.compute == 2 and not policy.adaptive and "decoding is a large share" in policy.reason


def test_precedence_cli_then_env_then_omp(four_cores, monkeypatch):
    env = {"MMVGM_THREADS": "3", "OMP_NUM_THREADS": "1"}
    assert resolve_threads(CPU, 2, 2, env=env).compute == 2  # --threads wins
    fixed = resolve_threads(CPU, 2, env=env)
    assert fixed.compute == 3 and "MMVGM_THREADS" in fixed.reason
    hands_off = resolve_threads(CPU, 2, env={"OMP_NUM_THREADS": "1"})
    assert hands_off == ThreadPolicy() and not hands_off.reason  # the user's OMP count stays
    scan = resolve_threads(CPU, 2, env={})
    assert scan.adaptive and scan.compute is None and scan.shared == 2
    assert not resolve_threads(CPU, 0, env={}).adaptive  # no workers: nothing to share


@pytest.mark.parametrize("threads, env", [(0, {}), (True, {}), ("2", {}), (None, {"MMVGM_THREADS": "many"}),
                                          (None, {"MMVGM_THREADS": "0"})])
def test_bad_counts_are_input_errors(threads, env):
    with pytest.raises(InputError):
        resolve_threads(CPU, 2, threads, env=env)


def test_decoder_and_worker_threads(monkeypatch):
    policy = resolve_threads(CPU, 2, env={})
    assert (policy.worker_torch, policy.worker_decoder, policy.in_process_decoder) == (1, 1, 0)
    assert decoder_threads({}, in_worker=True) == 1 and decoder_threads({}, in_worker=False) == 0
    forced = resolve_threads(CPU, 2, env={"MMVGM_DECODE_THREADS": "3"})
    assert forced.worker_decoder == forced.in_process_decoder == 3
    assert worker_torch_threads() == 1
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        decoding_worker_init(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("policy", [ThreadPolicy(compute=1), ThreadPolicy(adaptive=True, shared=1), ThreadPolicy()])
def test_the_loop_restores_the_count_also_when_it_raises(four_cores, policy):
    with pytest.raises(RuntimeError, match="boom"):
        with policy.loop() as loop:
            _decode_bound(loop)
            assert torch.get_num_threads() == (4 if policy == ThreadPolicy() else 1)
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 4


def test_a_loop_entered_bare_applies_a_policy_later(four_cores):
    with ThreadLoop() as loop:
        assert torch.get_num_threads() == 4
        loop.apply(ThreadPolicy(compute=2))
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 4


def test_io_needs_no_torch_for_its_decoder_threads():
    import subprocess
    import sys

    code = ("import sys, mmvgm.io.backends as b; b.decoder_threads(); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_cpu_threads_follow_what_the_loop_waits_on(four_cores):
    from mmvgm.runtime import resolve_threads

    with resolve_threads(torch.device("cpu"), 3).loop() as decode_bound:
        decode_bound.record(waited=9.0, computed=0.1)  # the first batch (worker start-up): ignored
        for _ in range(4):  # one window
            decode_bound.record(waited=0.2, computed=0.01)
        assert decode_bound.shared and torch.get_num_threads() == 1
        for _ in range(4):  # the load changes: compute-bound now, every core again
            decode_bound.record(waited=0.0, computed=0.3)
        assert decode_bound.shared is False and torch.get_num_threads() == 4
    assert torch.get_num_threads() == 4  # restored
    with resolve_threads(torch.device("cpu"), 3).loop() as compute_bound:
        for _ in range(5):
            compute_bound.record(waited=0.0, computed=0.5)
        assert compute_bound.shared is False and torch.get_num_threads() == 4
    with resolve_threads(torch.device("cuda"), 3).loop() as gpu:  # GPU compute: untouched
        for _ in range(5):
            gpu.record(waited=1.0, computed=0.0)
        assert gpu.shared is None and torch.get_num_threads() == 4
