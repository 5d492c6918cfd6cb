"""The LVD early-stop rule: a video is unsafe iff ``sum(flags[:eta]) >= eta * lambda``.

``flags[i]`` is 1 when denoising step ``i`` (0-based, in generation order) was flagged unsafe
by any category detector. The comparison is exact: ``lambda`` is parsed as a decimal
fraction (``Fraction("0.7")``), so ``eta * lambda`` is a rational number and ``10 * 0.7``
means exactly 7, never ``7.000000000000001``. Because the flag count is an integer, the rule is
the same as ``count >= ceil(eta * lambda)`` (see :func:`required_flags`).

The sequential variant reads flags one step at a time and stops as soon as the outcome cannot
change: "unsafe" once ``required`` flags are seen, "safe" once even flagging every remaining
step of the window could not reach ``required``. It always agrees with :func:`apply_rule`.

Compute saved (:func:`steps_run`, :func:`compute_saved`): a video the rule flags stops at its
decision step; a safe video runs all ``total_steps`` denoising steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Mapping, Optional, Sequence, Union

from mmvgm.errors import InputError

Number = Union[int, float, str, Fraction]

DEFAULT_ETA = 20
DEFAULT_LAMBDA = "0.6"


def parse_lambda(lam: Number) -> Fraction:
    """``lambda`` as an exact fraction in (0, 1]; floats go through ``str`` so 0.7 means 7/10."""
    try:
        if isinstance(lam, Fraction):
            value = lam
        elif isinstance(lam, str) and "/" in lam:
            num, den = lam.split("/", 1)
            value = Fraction(int(num), int(den))
        else:
            value = Fraction(str(lam).strip())
    except (ValueError, ZeroDivisionError):
        raise InputError(f"lambda must be a number in (0, 1], got '{lam}'") from None
    if not 0 < value <= 1:
        raise InputError(f"lambda must be in (0, 1], got {lam}")
    return value


def check_eta(eta: int, total_steps: Optional[int] = None) -> int:
    if isinstance(eta, bool) or int(eta) != eta or eta < 1:
        raise InputError(f"eta must be a positive whole number of steps, got {eta}")
    if total_steps is not None and eta > total_steps:
        raise InputError(f"eta={eta} is larger than the number of denoising steps recorded "
                         f"({total_steps}); choose eta <= {total_steps}")
    return int(eta)


def required_flags(eta: int, lam: Number) -> int:
    """Smallest whole number of flagged steps among the first ``eta`` that makes a video unsafe."""
    return math.ceil(check_eta(eta) * parse_lambda(lam))


def apply_rule(flags: Sequence[int], eta: int = DEFAULT_ETA, lam: Number = DEFAULT_LAMBDA) -> bool:
    """The research rule, exactly: ``sum(flags[:eta]) >= eta * lambda``."""
    check_eta(eta, len(flags))
    return sum(1 for f in flags[:eta] if f) >= check_eta(eta) * parse_lambda(lam)


@dataclass(frozen=True)
class Decision:
    """Outcome for one video: ``unsafe``; ``step`` = how many steps were read to decide (1-based)."""

    unsafe: bool
    step: int


class SequentialRule:
    """Stateful sequential rule, fed one flag per denoising step (used live by ``LatentGuard``)."""

    def __init__(self, eta: int = DEFAULT_ETA, lam: Number = DEFAULT_LAMBDA) -> None:
        self.eta = check_eta(eta)
        self.lam = parse_lambda(lam)
        self.required = required_flags(self.eta, self.lam)
        self.seen = 0
        self.count = 0
        self.decision: Optional[Decision] = None

    def update(self, flag: Union[int, bool]) -> Optional[Decision]:
        """Add the next step's flag; returns the decision once it is known (then keeps it)."""
        if self.decision is not None:
            return self.decision
        self.seen += 1
        self.count += 1 if flag else 0
        remaining = self.eta - self.seen
        if self.count >= self.required:
            self.decision = Decision(True, self.seen)
        elif self.count + remaining < self.required:
            self.decision = Decision(False, self.seen)
        return self.decision


def sequential_rule(flags: Sequence[int], eta: int = DEFAULT_ETA, lam: Number = DEFAULT_LAMBDA) -> Decision:
    """Read ``flags`` until the outcome of :func:`apply_rule` is decided."""
    check_eta(eta, len(flags))
    rule = SequentialRule(eta, lam)
    for flag in flags[:eta]:
        decision = rule.update(flag)
        if decision is not None:
            return decision
    raise AssertionError("the sequential rule always decides within eta steps")  # pragma: no cover


def decide(flags: Sequence[int], eta: int = DEFAULT_ETA, lam: Number = DEFAULT_LAMBDA,
           sequential: bool = False) -> Decision:
    """Decision with the step it is taken at: ``eta`` for the batch rule, earlier when sequential."""
    if sequential:
        return sequential_rule(flags, eta, lam)
    return Decision(apply_rule(flags, eta, lam), check_eta(eta))


def steps_run(decision: Decision, total_steps: int) -> int:
    """Denoising steps actually run: an unsafe video stops at its decision step, a safe one runs all."""
    return decision.step if decision.unsafe else total_steps


def compute_saved(decisions: Iterable[Decision], total_steps: int) -> float:
    """``1 - steps run / steps that would run without a guard`` over ``decisions``."""
    decisions = list(decisions)
    if not decisions:
        return 0.0
    ran = sum(steps_run(d, total_steps) for d in decisions)
    return 1.0 - ran / (total_steps * len(decisions))


def decide_all(flag_table: Mapping[str, Sequence[int]], eta: int = DEFAULT_ETA,
               lam: Number = DEFAULT_LAMBDA, sequential: bool = False) -> dict:
    """``{video_id: Decision}`` for a table of per-step flags."""
    return {vid: decide(flags, eta, lam, sequential) for vid, flags in flag_table.items()}
