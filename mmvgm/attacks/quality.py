"""Image quality of a protected image against its original: L-inf, L2, PSNR, SSIM, LPIPS.

Distances are in [0, 1] pixel units, measured on what is actually saved (8-bit). LPIPS needs
its backbone's ImageNet weights, which are a download: mmvgm only uses weights already on disk
(the torch hub cache, or a path given by the user) and otherwise reports ``lpips: null``.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from mmvgm.errors import CheckpointError, DependencyError

# torchvision file names of the ImageNet backbones LPIPS builds on
LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                        "squeeze": "squeezenet1_1-b8a52dc0.pth"}
LPIPS_MISSING_NOTE = ("LPIPS is off: its AlexNet backbone weights are not on disk (mmvgm fetches nothing "
                      "unasked); pass --lpips-weights PATH (torchvision alexnet-owt-7be5be79.pth), or a hub "
                      "id hf://org/name/FILE.pth, to enable it")


def _as_float(image: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
        return image.astype(np.float64)
    arr = np.asarray(image)
    return arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)


def image_metrics(original: np.ndarray, protected: np.ndarray) -> Dict[str, float]:
    """L-inf, L2 (whole image, [0,1] units), PSNR (dB) and SSIM of two uint8 (H,W,3) images."""
    from skimage.metrics import structural_similarity

    a, b = _as_float(original), _as_float(protected)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if np.asarray(original).dtype == np.uint8 and np.asarray(protected).dtype == np.uint8:
        diff = (np.asarray(protected, np.int64) - np.asarray(original, np.int64)) / 255.0  # exact levels
    else:
        diff = b - a
    mse = float(np.mean(diff ** 2))
    psnr = float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)
    side = min(a.shape[0], a.shape[1])
    win = min(7, side if side % 2 else side - 1)
    ssim = (float(structural_similarity(a, b, data_range=1.0, channel_axis=-1, win_size=win))
            if win >= 3 else float("nan"))
    return {"linf": float(np.abs(diff).max()), "l2": float(np.sqrt(np.sum(diff ** 2))),
            "psnr": psnr, "ssim": ssim}


def json_number(value: float) -> Optional[float]:
    """JSON has no infinity: an identical image's PSNR is reported as null."""
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _hub_backbone(net: str) -> Optional[Path]:
    path = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net]
    return path if path.is_file() else None


def _lpips_file(weights: Union[str, Path]) -> Path:
    from mmvgm.checkpoint.hub import HubFiles, resolve

    path = resolve(weights, HubFiles(choices=((("*.pth",),),)))
    if path.is_dir():
        found = sorted(path.glob("*.pth"))
        if len(found) != 1:
            raise CheckpointError(f"expected one .pth file here, found {len(found)}; name it: hf://org/name/FILE.pth",
                                  path)
        path = found[0]
    return path


def load_lpips(weights: Optional[Union[str, Path]] = None, net: str = "alex",
               device: Optional[torch.device] = None) -> Tuple[Optional[nn.Module], Optional[str]]:
    """``(lpips_module, None)`` when backbone weights are on disk, else ``(None, note)``.

    ``weights``: a torchvision state dict of the backbone (``features.*`` keys) or a full LPIPS
    state dict, as a local file or a hub id (``hf://org/name/FILE.pth``, or ``org/name`` when
    the repo holds one ``.pth``). Without it, the torch hub cache is checked; nothing is fetched.
    """
    path = _lpips_file(weights) if weights is not None else _hub_backbone(net)
    if path is None:
        return None, LPIPS_MISSING_NOTE
    if not path.is_file():
        raise CheckpointError("LPIPS weights not found", path)
    try:
        import lpips
    except ImportError:
        if weights is not None:  # asked for explicitly: an error, not a silent "off"
            raise DependencyError("--lpips-weights needs the lpips package: pip install 'mmvgm[lpips]'") from None
        return None, "LPIPS is off: the lpips package is not installed (pip install 'mmvgm[lpips]')"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable user file
        raise CheckpointError(f"cannot read LPIPS weights: {exc}".splitlines()[0], path) from None
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull:
        warnings.simplefilter("ignore")
        import contextlib
        with contextlib.redirect_stdout(devnull):  # lpips prints "Setting up ..." lines
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    own = model.state_dict()
    if any(k.startswith("net.") for k in state):  # a full LPIPS state dict
        mapped = {k: v for k, v in state.items() if k in own}
    else:  # a torchvision backbone: features.N.* -> net.sliceK.N.*
        index = {k.split(".")[2]: k.rsplit(".", 2)[0] for k in own if k.startswith("net.slice")}
        mapped = {}
        for key, value in state.items():
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == "features" and parts[1] in index:
                mapped[f"{index[parts[1]]}.{parts[1]}.{parts[2]}"] = value
    needed = [k for k in own if k.startswith("net.")]
    if not needed or any(k not in mapped for k in needed):
        raise CheckpointError(f"not {net} LPIPS backbone weights (expected torchvision 'features.*' keys)", path)
    try:
        model.load_state_dict(mapped, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"LPIPS weights do not fit: {str(exc).splitlines()[0]}", path) from None
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model, None


LPIPS_MIN_SIDE = 64  # AlexNet's strides leave nothing of smaller images


def lpips_distance(model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image LPIPS of two (B,3,H,W) batches in [0,1] (differentiable); images with a side
    below 64 px are upsampled first (AlexNet cannot see them otherwise)."""
    side = min(a.shape[-2:])
    if side < LPIPS_MIN_SIDE:
        size = tuple(max(LPIPS_MIN_SIDE, round(s * LPIPS_MIN_SIDE / side)) for s in a.shape[-2:])
        a, b = (torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in (a, b))
    return model(a * 2 - 1, b * 2 - 1).flatten()
