"""The training-free detector's statistic (``models.temporal``): its arithmetic, its options and
that it is an ordinary model to ``build_model``."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmvgm.errors import ConfigError
from mmvgm.models import build_model
from mmvgm.models.temporal import EPS, LOGIT_BOUND, check_statistic, tail_logit, volatility


def reference(seq: np.ndarray, order: int, distance: str) -> np.ndarray:
    """The statistic written out in numpy, one clip at a time."""
    out = []
    for clip in seq:
        unit = clip / np.linalg.norm(clip, axis=1, keepdims=True)
        a, b = unit[1:], unit[:-1]
        moves = 1 - (a * b).sum(1) if distance == "cosine" else np.linalg.norm(a - b, axis=1)
        moves = np.diff(moves, n=order - 1)
        out.append(math.log(moves.std(ddof=1) + EPS))
    return np.array(out)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_volatility_is_the_spread_of_the_differences_of_consecutive_distances(order, distance):
    seq = np.random.default_rng(order).normal(size=(3, 9, 5))
    got = volatility(torch.from_numpy(seq).float(), order, distance).numpy()
    np.testing.assert_allclose(got, reference(seq, order, distance), rtol=1e-4, atol=1e-4)


def test_steady_motion_has_no_second_order_spread_and_jerky_motion_has():
    angles = np.arange(10) * 0.1   # a point turning at a constant speed
    steady = np.stack([np.cos(angles), np.sin(angles)], 1)[None]
    jerky = np.stack([np.cos(angles ** 1.7), np.sin(angles ** 1.7)], 1)[None]
    s, j = (float(volatility(torch.from_numpy(x).float(), 2, "l2")) for x in (steady, jerky))
    assert s < math.log(1e-5) < j


def test_the_logit_follows_the_direction_and_stays_finite():
    z = torch.tensor([-50.0, -2.0, 0.0, 2.0, 50.0])
    m = build_model({"kind": "temporal_statistic", "backbone": "timm_tiny"})
    for direction, expect in (("high", [0, 1, 2, 3, 4]), ("low", [4, 3, 2, 1, 0])):
        m.statistic["direction"] = direction
        logits = m.logit(z)
        assert torch.isfinite(logits).all() and logits.abs().max() <= LOGIT_BOUND
        assert torch.argsort(logits).tolist() == expect
    m.statistic["direction"] = "both"
    both = m.logit(z)
    assert torch.allclose(both, both.flip(0)) and int(both.argmin()) == 2  # symmetric, lowest at the center
    assert abs(float(torch.sigmoid(tail_logit(torch.log(torch.tensor(0.05))))) - 0.95) < 1e-6


@pytest.mark.parametrize("backbone, embedding, frames", [("timm_tiny", {"unit": "frame"}, 6),
                                                         ("videomae_tiny", {"unit": "clip", "stride": 2}, 14)])
def test_frame_and_clip_embeddings_rebuild_from_the_config(backbone, embedding, frames):
    torch.manual_seed(0)
    model = build_model({"kind": "temporal_statistic", "backbone": backbone, "embedding": embedding}).eval()
    x = torch.randn(2, frames, 3, 32, 32)
    out = model(x)
    assert out["detect"].shape == out["statistic"].shape == (2,) and out["features"].dim() == 2
    again = build_model(model.config)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.eval()(x)["detect"], out["detect"])
    assert {"center", "scale"} <= set(model.state_dict())


def test_bad_options_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        check_statistic({"distance": "cosin"})
    with pytest.raises(ConfigError, match="order must be one of"):
        check_statistic({"order": 4})
    with pytest.raises(ConfigError, match="unknown model kind"):
        build_model({"kind": "temporal", "backbone": "timm_tiny"})
    model = build_model({"kind": "temporal_statistic", "backbone": "timm_tiny"})
    with pytest.raises(ConfigError, match="at least 4 embeddings"):
        model(torch.zeros(1, 3, 3, 32, 32))
    with pytest.raises(ConfigError, match="unit 'clip'"):
        build_model({"kind": "temporal_statistic", "backbone": "videomae_tiny"})(torch.zeros(1, 8, 3, 32, 32))
