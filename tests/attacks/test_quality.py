import math

import numpy as np
import pytest
import torch

from mmvgm.attacks.quality import LPIPS_MISSING_NOTE, image_metrics, json_number, load_lpips
from mmvgm.errors import CheckpointError, DependencyError


def test_metrics_of_a_known_difference():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 104
    m = image_metrics(a, b)
    assert m["linf"] == 4 / 255
    assert m["l2"] == pytest.approx(4 / 255)
    assert m["psnr"] == pytest.approx(10 * math.log10(1 / ((4 / 255) ** 2 / (16 * 16 * 3))))
    assert 0.9 < m["ssim"] < 1
    same = image_metrics(a, a)
    assert same["psnr"] == math.inf and json_number(same["psnr"]) is None and same["ssim"] == 1


def test_lpips_is_off_without_local_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    model, note = load_lpips()
    assert model is None and note == LPIPS_MISSING_NOTE and "\n" not in note


def test_explicit_lpips_weights_without_the_package_is_an_error(tmp_path, monkeypatch):
    import sys

    (tmp_path / "alex.pth").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "lpips", None)  # as if not installed
    with pytest.raises(DependencyError, match="pip install 'mmvgm\\[lpips\\]'"):
        load_lpips(tmp_path / "alex.pth")


def test_lpips_weights_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_lpips(tmp_path / "missing.pth")
    pytest.importorskip("lpips")
    torch.save({"something": torch.zeros(2)}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="expected torchvision"):
        load_lpips(tmp_path / "wrong.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_lpips(tmp_path / "junk.pth")
