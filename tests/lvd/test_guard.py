import pytest
import torch

from mmvgm.errors import InputError
from mmvgm.lvd.guard import LatentGuard
from mmvgm.lvd.rule import Decision
from tests.lvd.conftest import run_tiny


def _count_unet_calls(pipe):
    calls = []
    forward = pipe.unet.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    pipe.unet.forward = counting
    return calls


def test_guard_interrupts_early_when_the_detector_always_fires(tiny_pipeline):
    pipe = tiny_pipeline
    calls = _count_unet_calls(pipe)
    seen = []

    def always(x0, step):
        seen.append((step, tuple(x0.shape)))
        return torch.ones(x0.shape[0], dtype=torch.bool)

    guard = LatentGuard(pipe, always, eta=4, lam=0.5)  # 2 flags decide
    out = run_tiny(pipe, steps=8, callback_on_step_end=guard)
    assert guard.unsafe and guard.decision_step == 2
    assert len(calls) == 2 and guard.result.steps_run == 2  # 6 of 8 UNet steps never ran
    assert guard.result.decisions == [Decision(True, 2)]
    assert [s for s, _ in seen] == [0, 1] and seen[0][1] == (1, 4, 4, 8, 8)
    assert out.frames.shape == (1, 4, 4, 8, 8)


def test_guard_lets_the_run_finish_when_the_detector_never_fires(tiny_pipeline):
    pipe = tiny_pipeline
    calls = _count_unet_calls(pipe)
    guard = LatentGuard(pipe, lambda x0, step: False, eta=4, lam=0.5)
    plain = run_tiny(pipe, steps=8).frames
    guarded = run_tiny(pipe, steps=8, callback_on_step_end=guard).frames
    assert not guard.unsafe and guard.decision_step is None
    assert len(calls) == 16 and guard.result.steps_run == 8
    # 3 misses of 4 make 2 flags impossible: the detector stops being asked after step 3
    assert guard.result.flags == [[0, 0, 0]] and guard.result.decisions == [Decision(False, 3)]
    assert torch.equal(plain, guarded)  # the guard never changes what it lets through
    guard.detach()
    assert "step" not in pipe.scheduler.__dict__


def test_guard_batch_rule_and_policies(tiny_pipeline):
    pipe = tiny_pipeline
    # video 0 always flagged, video 1 never
    half = lambda x0, step: torch.tensor([True, False])  # noqa: E731
    guard = LatentGuard(pipe, half, eta=3, lam=1, sequential=False, policy="all")
    run_tiny(pipe, steps=6, prompt=["the cat", "a dog"], callback_on_step_end=guard)
    assert not guard.unsafe and guard.result.steps_run == 6
    assert guard.result.decisions == [Decision(True, 3), Decision(False, 3)]
    guard = LatentGuard(pipe, half, eta=3, lam=1, sequential=False, policy="any")
    run_tiny(pipe, steps=6, prompt=["the cat", "a dog"], callback_on_step_end=guard)
    assert guard.unsafe and guard.decision_step == 3  # the batch rule waits for eta steps


def test_guard_bad_arguments(tiny_pipeline):
    with pytest.raises(InputError, match="lambda"):
        LatentGuard(tiny_pipeline, lambda x, s: False, lam=2)
    with pytest.raises(InputError, match="policy"):
        LatentGuard(tiny_pipeline, lambda x, s: False, policy="most")
    guard = LatentGuard(tiny_pipeline, lambda x, s: [True, True, True], eta=2)
    with pytest.raises(InputError, match="3 flags for a batch of 1"):
        run_tiny(tiny_pipeline, steps=3, callback_on_step_end=guard)
    # too few denoising steps for the rule to ever flag: refused, not silently passed
    for kwargs, needed in (({"lam": 1}, 4), ({"lam": 0.5, "sequential": False}, 4)):
        guard = LatentGuard(tiny_pipeline, lambda x, s: True, eta=4, **kwargs)
        with pytest.raises(InputError, match=f"runs 3 denoising steps.*needs {needed}"):
            run_tiny(tiny_pipeline, steps=3, callback_on_step_end=guard)
    guard = LatentGuard(tiny_pipeline, lambda x, s: True, eta=4, lam=0.5)  # 2 flags can still stop it
    run_tiny(tiny_pipeline, steps=3, callback_on_step_end=guard)
    assert guard.unsafe and guard.decision_step == 2


def test_guard_with_a_trained_lvd_model(tiny_pipeline, tmp_path):
    from mmvgm.lvd.model import load_lvd_model
    from mmvgm.lvd.train import train_lvd
    from tests.lvd.test_train import make_store

    train_lvd(make_store(tmp_path / "s", 6, 6), tmp_path / "m", categories=["violent"], epochs=1,
              device="cpu", progress=False)
    pipe = tiny_pipeline
    model = load_lvd_model(tmp_path / "m", device="cpu")
    model.thresholds["violent"] = 0.0  # every step is flagged
    video = run_tiny(pipe, steps=8, callback_on_step_end=(guard := LatentGuard(pipe, model, eta=3, lam=1)))
    assert guard.unsafe and guard.decision_step == 3 and video.frames.shape[2] == 4
    model.thresholds["violent"] = 1.01  # nothing is flagged
    run_tiny(pipe, steps=8, callback_on_step_end=guard)
    assert not guard.unsafe and guard.result.steps_run == 8
    model.mode, model.steps = "per-step", [0, 1]  # a per-step bundle that misses step 2
    with pytest.raises(InputError, match="does not cover every step"):
        LatentGuard(pipe, model, eta=3)
