"""``LatentGuard``: stop a diffusers text-to-video pipeline as soon as LVD says "unsafe".

One line attaches it::

    video = pipe(prompt, callback_on_step_end=LatentGuard(pipe, load_lvd_model("lvd_models/")))

At every denoising step the guard takes the x0 that the scheduler predicted in that step
(captured by a :class:`~mmvgm.lvd.trajectories.TrajectoryRecorder` on ``scheduler.step``),
asks the detector whether the step is unsafe, and feeds the flag to the eta/lambda rule
(sequential by default). When the rule fires it sets ``pipe._interrupt = True``: the pipeline
skips the remaining UNet steps. Check ``guard.unsafe`` (and ``guard.decision_step``) after the
call and discard the output when it is set; an interrupted pipeline still decodes its
partially denoised latents.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Union

import torch

from mmvgm.errors import InputError
from mmvgm.lvd.rule import (DEFAULT_ETA, DEFAULT_LAMBDA, Decision, Number, SequentialRule, apply_rule,
                            required_flags)

# detector(x0 (B, C, F, H, W), step_index) -> one flag per video (bool, list or tensor of B)
Detector = Callable[[torch.Tensor, int], Union[bool, List[bool], torch.Tensor]]

POLICIES = ("any", "all")


@dataclass
class GuardResult:
    """What the guard saw in one pipeline call."""

    unsafe: bool = False
    decision_step: Optional[int] = None  # 1-based step at which the pipeline was interrupted
    steps_run: int = 0  # denoising steps that actually ran
    decisions: List[Optional[Decision]] = field(default_factory=list)  # per video in the batch
    flags: List[List[int]] = field(default_factory=list)  # per video, per scored step
    detector_seconds: float = 0.0


class LatentGuard:
    """A ``callback_on_step_end`` that interrupts generation when the LVD rule fires.

    ``policy``: with several videos in one call, ``"any"`` stops the batch when one video is
    unsafe (nothing unsafe is finished), ``"all"`` only when every video is.
    """

    def __init__(self, pipe: Any, detector: Detector, eta: int = DEFAULT_ETA, lam: Number = DEFAULT_LAMBDA,
                 sequential: bool = True, policy: str = "any") -> None:
        from mmvgm.lvd.trajectories import TrajectoryRecorder

        if policy not in POLICIES:
            raise InputError(f"policy must be one of {POLICIES}, got '{policy}'")
        if not callable(detector):
            raise InputError("detector must be callable: detector(x0, step_index) -> flags")
        SequentialRule(eta, lam)  # validates eta and lambda now, not mid-generation
        covers = getattr(detector, "covers", None)
        if covers is not None and not all(covers(step) for step in range(eta)):
            raise InputError(f"the detector does not cover every step the rule reads (0-{eta - 1}); "
                             "train per-step models for those steps or use a conditioned model")
        self.pipe = pipe
        self.detector = detector
        self.eta, self.lam, self.sequential, self.policy = eta, lam, sequential, policy
        self.recorder = TrajectoryRecorder(pipe, keep=False).attach()
        self.result = GuardResult()
        self._rules: List[SequentialRule] = []
        self.tensor_inputs = ["latents"]

    # -- the callback
    def __call__(self, pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict) -> dict:
        if step_index == 0:
            self.reset()
            # a call with too few denoising steps could never be stopped: refuse it rather than pass it
            total = getattr(pipe, "num_timesteps", None)  # diffusers pipelines set it before the loop
            needed = required_flags(self.eta, self.lam) if self.sequential else self.eta
            if isinstance(total, int) and total < needed:
                raise InputError(f"this call runs {total} denoising steps; the guard (eta={self.eta}, "
                                 f"lambda={self.lam}) needs {needed} to ever flag a video: lower eta or "
                                 "run more steps")
        res = self.result
        res.steps_run = step_index + 1
        if res.unsafe or step_index >= self.eta or self._all_decided():
            return callback_kwargs
        x0 = self.recorder.last_x0
        if x0 is None:
            raise InputError("the guard saw no scheduler step: attach it to the pipeline it guards")
        start = time.perf_counter()
        with torch.no_grad():
            flags = _as_flags(self.detector(x0, step_index), x0.shape[0])
        res.detector_seconds += time.perf_counter() - start
        if not self._rules:
            self._rules = [SequentialRule(self.eta, self.lam) for _ in flags]
            res.flags = [[] for _ in flags]
            res.decisions = [None] * len(flags)
        for b, flag in enumerate(flags):
            res.flags[b].append(int(flag))
            if self.sequential:
                res.decisions[b] = self._rules[b].update(flag)
            elif step_index + 1 == self.eta:
                res.decisions[b] = Decision(apply_rule(res.flags[b], self.eta, self.lam), self.eta)
        unsafe = [d is not None and d.unsafe for d in res.decisions]
        if any(unsafe) if self.policy == "any" else all(unsafe):
            res.unsafe = True
            res.decision_step = step_index + 1
            pipe._interrupt = True
        return callback_kwargs

    def _all_decided(self) -> bool:
        return bool(self.result.decisions) and all(d is not None for d in self.result.decisions)

    # -- state
    def reset(self) -> None:
        self.result = GuardResult()
        self._rules = []

    @property
    def unsafe(self) -> bool:
        return self.result.unsafe

    @property
    def decision_step(self) -> Optional[int]:
        return self.result.decision_step

    def detach(self) -> None:
        """Restore the scheduler's own ``step`` (the guard stops seeing x0)."""
        self.recorder.detach()


def _as_flags(out: Any, batch: int) -> List[bool]:
    if torch.is_tensor(out):
        out = out.detach().reshape(-1).tolist()
    elif isinstance(out, (bool, int)):
        out = [bool(out)] * batch
    out = [bool(x) for x in out]
    if len(out) != batch:
        raise InputError(f"the detector returned {len(out)} flags for a batch of {batch} videos")
    return out
