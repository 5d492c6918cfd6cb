import torch

from mmvgm.lvd.trajectories import TrajectoryRecorder
from tests.lvd.conftest import LATENT, run_tiny


def test_recorder_captures_the_schedulers_pred_original_sample(tiny_pipeline):
    pipe = tiny_pipeline
    spy = []
    original = pipe.scheduler.step

    def spying_step(*args, **kwargs):
        out = original(*args, **kwargs)
        spy.append((out.pred_original_sample.clone(), out.prev_sample.clone()))
        return out

    pipe.scheduler.step = spying_step
    with TrajectoryRecorder(pipe) as rec:
        run_tiny(pipe, steps=5)
    assert pipe.scheduler.step is spying_step  # detaching restored the previous step()
    traj = rec.trajectory()
    b, c, f, s = 1, LATENT["channels"], LATENT["frames"], LATENT["size"]
    assert traj.shape == (5, b, c, f, s, s) and traj.dtype == torch.float16
    assert len(spy) == 5
    assert rec.timesteps == [int(t) for t in pipe.scheduler.timesteps]
    for i, (x0, prev) in enumerate(spy):
        assert torch.equal(traj[i], x0.half())
        # not the research bug: x0 re-derived from the already-updated latents differs
        assert not torch.allclose(traj[i].float(), prev, atol=1e-3)
    # x0 of the last DDIM step is the final latent the pipeline returns
    assert not torch.equal(traj[0], traj[-1])


def test_recorder_derives_x0_for_schedulers_without_it(tiny_pipeline):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    pipe = tiny_pipeline
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    calls = []
    original = pipe.scheduler.step

    def spying_step(model_output, t, sample, *args, **kwargs):
        calls.append((model_output.clone(), int(t), sample.clone()))
        return original(model_output, t, sample, *args, **kwargs)

    pipe.scheduler.step = spying_step
    with TrajectoryRecorder(pipe) as rec:
        run_tiny(pipe, steps=3)
    assert rec.trajectory().shape[0] == 3
    # DDIM's own pred_original_sample for the same (output, t, pre-update sample)
    ddim = DDIMScheduler.from_config(pipe.scheduler.config)
    ddim.set_timesteps(1000)
    for i, (eps, t, sample) in enumerate(calls):
        ref = ddim.step(eps, t, sample).pred_original_sample
        assert torch.allclose(rec.trajectory()[i].float(), ref.half().float(), atol=1e-3)
