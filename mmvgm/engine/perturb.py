"""Robustness perturbations for ``mmvgm eval --perturb``: re-encode clips before the model sees them.

Spec: comma-separated entries, each ``name:value``; ``+`` chains several in one entry.

    jpeg:50           JPEG quality 50 on every frame (OpenCV)
    h264:28           H.264 re-encode at CRF 28 (PyAV/libx264, yuv420p); ``h264:crf28`` too
    resize:0.5        scale each frame by 0.5 (the model's own resize/crop follows)
    fps:0.5           keep every 1/0.5 = 2nd frame (reads 2x the frames first); ``fps:half`` too
    jpeg:70+resize:0.5  both, in that order

Adding a perturbation is one registered class; nothing else changes.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import numpy as np

from mmvgm.errors import InputError

_REGISTRY: Dict[str, Callable[[str], "Perturbation"]] = {}


def register_perturbation(name: str):
    def deco(cls):
        _REGISTRY[name] = cls
        return cls
    return deco


def list_perturbations() -> List[str]:
    return sorted(_REGISTRY)


class Perturbation:
    """``apply(clip)``: uint8 (T',H,W,3) RGB -> uint8 (T,H',W',3); reads ``frames_needed(T)`` = T'."""

    spec: str = ""

    def frames_needed(self, num_frames: int) -> int:
        return num_frames

    def apply(self, clip: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        return self.apply(np.asarray(clip))

    def __repr__(self) -> str:
        return f"Perturbation({self.spec})"


def _number(value: str, spec: str, lo: float, hi: float, integer: bool = False) -> float:
    try:
        x = float(value)
    except ValueError:
        raise InputError(f"bad perturbation '{spec}': '{value}' is not a number") from None
    if not lo <= x <= hi or (integer and x != int(x)):
        kind = "an integer" if integer else "a number"
        raise InputError(f"bad perturbation '{spec}': value must be {kind} in [{lo:g}, {hi:g}]")
    return int(x) if integer else x


@register_perturbation("jpeg")
class Jpeg(Perturbation):
    def __init__(self, value: str):
        self.spec = f"jpeg:{value}"
        self.quality = _number(value, self.spec, 1, 100, integer=True)

    def apply(self, clip: np.ndarray) -> np.ndarray:
        from mmvgm.io.image import jpeg_roundtrip

        out = np.empty_like(clip)
        for i, frame in enumerate(clip):
            out[i] = jpeg_roundtrip(frame, self.quality)
        return out


@register_perturbation("h264")
class H264(Perturbation):
    def __init__(self, value: str):
        self.spec = f"h264:{value}"
        self.crf = _number(value.lower().removeprefix("crf"), self.spec, 0, 51, integer=True)

    def apply(self, clip: np.ndarray) -> np.ndarray:
        import av

        from mmvgm.io.backends import frame_to_rgb

        t, h, w = clip.shape[:3]
        # yuv420p needs even sides: pad by edge replication, crop back after decoding
        padded = np.pad(clip, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        buf = io.BytesIO()
        with av.open(buf, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height = padded.shape[2], padded.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(self.crf), "preset": "veryfast"}
            for frame in padded:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        buf.seek(0)
        with av.open(buf, mode="r") as container:
            frames = [frame_to_rgb(f) for f in container.decode(video=0)]
        if len(frames) != t:
            raise InputError(f"{self.spec}: re-encoding returned {len(frames)} of {t} frames")
        return np.stack(frames)[:, :h, :w]


@register_perturbation("resize")
class Resize(Perturbation):
    def __init__(self, value: str):
        self.spec = f"resize:{value}"
        self.factor = _number(value, self.spec, 0.01, 8.0)

    def apply(self, clip: np.ndarray) -> np.ndarray:
        import cv2

        h, w = clip.shape[1:3]
        size = (max(2, round(w * self.factor)), max(2, round(h * self.factor)))
        interp = cv2.INTER_AREA if self.factor < 1 else cv2.INTER_LINEAR
        return np.stack([cv2.resize(np.ascontiguousarray(f), size, interpolation=interp) for f in clip])


@register_perturbation("fps")
class Fps(Perturbation):
    """Frame-rate reduction: keep every k-th frame, k = round(1 / factor)."""

    def __init__(self, value: str):
        self.spec = f"fps:{value}"
        named = {"half": "0.5", "third": "0.3333333", "quarter": "0.25"}
        factor = _number(named.get(value.lower(), value), self.spec, 0.01, 1.0)
        self.step = max(1, round(1.0 / factor))

    def frames_needed(self, num_frames: int) -> int:
        return num_frames * self.step

    def apply(self, clip: np.ndarray) -> np.ndarray:
        return clip[:: self.step]


@dataclass
class Chain(Perturbation):
    parts: Sequence[Perturbation]
    spec: str = ""

    def frames_needed(self, num_frames: int) -> int:
        for p in reversed(self.parts):
            num_frames = p.frames_needed(num_frames)
        return num_frames

    def apply(self, clip: np.ndarray) -> np.ndarray:
        for p in self.parts:
            clip = p.apply(clip)
        return clip


def parse_perturbation(entry: str) -> Perturbation:
    """One entry (``jpeg:50`` or ``jpeg:50+resize:0.5``)."""
    parts = []
    for piece in entry.split("+"):
        name, sep, value = piece.strip().partition(":")
        if name not in _REGISTRY or not sep or not value:
            raise InputError(f"bad perturbation '{piece.strip()}': expected NAME:VALUE with NAME one of "
                             f"{', '.join(list_perturbations())} (e.g. jpeg:50,h264:28,resize:0.5,fps:0.5)")
        parts.append(_REGISTRY[name](value.strip()))
    return parts[0] if len(parts) == 1 else Chain(parts, spec="+".join(p.spec for p in parts))


def parse_perturbations(spec: str) -> List[Perturbation]:
    """``"jpeg:50,h264:28"`` -> one Perturbation per comma-separated entry (sweep points)."""
    entries = [e for e in (spec or "").split(",") if e.strip()]
    if not entries:
        raise InputError("empty --perturb list (e.g. jpeg:50,h264:28,resize:0.5,fps:0.5)")
    return [parse_perturbation(e) for e in entries]
