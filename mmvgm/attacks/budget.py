"""Parsing of perturbation budgets (``4/255``, ``0.0157``) and small ``key=value`` specs.

One home for the numbers users type: ``mmvgm protect --eps`` and the robustness attack
specs (``pgd:eps=4/255,steps=10``) both parse through here.

Note on the research code: its "eps 4/255" was applied to images scaled to [-1, 1], so it
was 2/255 in [0, 1] pixel space. mmvgm's budgets are always in [0, 1] pixel space.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Union

from mmvgm.errors import InputError

Number = Union[str, int, float]


def parse_fraction(value: Number, what: str = "value") -> float:
    """``"4/255"`` -> 0.01568..., ``"0.0157"`` -> 0.0157; garbage, ``5/0`` and NaN raise InputError."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            if "/" in text:
                num, den = text.split("/", 1)
                den_f = float(den)
                if den_f == 0:
                    raise InputError(f"{what} '{text}' divides by zero")
                number = float(num) / den_f
            else:
                if not text:
                    raise ValueError(text)
                number = float(Fraction(text)) if text.lower() not in ("nan", "inf", "-inf") else float(text)
        except (ValueError, ZeroDivisionError, OverflowError):  # OverflowError: "1e400"
            hint = " (examples: 4/255, 0.0157)" if what == "eps" else ""
            raise InputError(f"{what} '{text}' is not a number{hint}") from None
    if not math.isfinite(number):
        raise InputError(f"{what} '{value}' is not a finite number")
    return number


def parse_eps(value: Number) -> float:
    """An L-infinity budget in [0, 1] pixel units: ``4/255``, ``2/255`` or ``0.0157``.

    Values <= 0 or > 1 are refused (a budget of 4 almost always means 4/255: say so).
    """
    eps = parse_fraction(value, "eps")
    if eps <= 0:
        raise InputError(f"eps must be > 0 (pixel units in [0, 1], e.g. 4/255), got {value}")
    if eps > 1:
        raise InputError(f"eps must be <= 1 (pixel units in [0, 1]); did you mean {value}/255?")
    return eps


def parse_bool(value: Union[str, bool], what: str = "value") -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InputError(f"{what} must be true or false, got '{value}'")


def parse_positive_int(value: Number, what: str, allow_zero: bool = False) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be an integer, got '{value}'") from None
    if not number.is_integer():
        raise InputError(f"{what} must be an integer, got '{value}'")
    low = 0 if allow_zero else 1
    if number < low:
        raise InputError(f"{what} must be >= {low}, got '{value}'")
    return int(number)
