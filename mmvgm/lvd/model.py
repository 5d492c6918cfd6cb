"""LVD detectors: the network, the input adapter (latent or VAE-decoded RGB) and the saved bundle.

A bundle directory holds ``lvd.yaml`` (mode, categories, steps, backbone config, input
statistics, validation-fitted thresholds, the split, provenance) and safetensors weights:
``model.safetensors`` for ``conditioned`` (one model, step embedding, K multi-label outputs),
``per_step/<category>_step<NN>.safetensors`` for ``per-step`` (one binary model per pair).
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from mmvgm.config import load_yaml, yaml_safe
from mmvgm.errors import CheckpointError, InputError, PathLike
from mmvgm.lvd.graphs import GraphCache

FORMAT = "mmvgm-lvd-model"
MODES = ("per-step", "conditioned")
INPUTS = ("latent", "rgb")


class LVDNet(nn.Module):
    """Backbone over x0 frames (B, F, C, H, W) -> K logits; ``conditioned`` adds a step embedding."""

    def __init__(self, backbone_cfg: Mapping[str, Any], num_outputs: int, conditioned: bool) -> None:
        super().__init__()
        from mmvgm.models.registry import build_backbone

        self.backbone = build_backbone(dict(backbone_cfg))
        dim = self.backbone.num_features
        self.conditioned = conditioned
        self.step_embed = (nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
                           if conditioned else None)
        # a non-linear head, so the step embedding can change more than a per-step bias
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, num_outputs))

    def forward(self, frames: torch.Tensor, steps: Optional[torch.Tensor] = None) -> torch.Tensor:
        features = self.backbone(frames)["features"]
        if self.step_embed is not None:
            from diffusers.models.embeddings import get_timestep_embedding

            if steps is None:
                raise InputError("a step-conditioned LVD model needs the step index")
            emb = get_timestep_embedding(steps.reshape(-1).to(features.device), features.shape[-1])
            features = features + self.step_embed(emb.to(features.dtype))
        return self.head(features)


class InputAdapter(nn.Module):
    """x0 latents (B, C, F, H, W) -> backbone input (B, F, C', S, S).

    ``latent``: per-channel standardisation with training statistics. ``rgb``: decode every
    frame with a local VAE (as the research code did), quantise to uint8 like its mp4 files,
    then the backbone's own resize/crop/normalisation (``data.transforms.VideoTransform``).
    """

    def __init__(self, kind: str, stats: Optional[Mapping[str, Sequence[float]]] = None,
                 vae: Optional[PathLike] = None, preprocess: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        if kind not in INPUTS:
            raise InputError(f"--input must be one of {INPUTS}, got '{kind}'")
        self.kind = kind
        if kind == "latent":
            stats = stats or {"mean": [0.0], "std": [1.0]}
            self.register_buffer("mean", torch.tensor(stats["mean"]).view(1, -1, 1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(stats["std"]).view(1, -1, 1, 1, 1), persistent=False)
        else:
            from mmvgm.data.transforms import VideoTransform

            if vae is None:
                raise InputError("--input rgb needs --vae DIR (a local diffusers AutoencoderKL folder)")
            self.vae = load_vae(vae)
            self.transform = VideoTransform.from_config(dict(preprocess or {}))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        if self.kind == "latent":
            x = (x0.float() - self.mean) / self.std
            return x.permute(0, 2, 1, 3, 4).contiguous()
        b, c, f, h, w = x0.shape
        lat = x0.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).to(self.vae.dtype)
        scale = getattr(self.vae.config, "scaling_factor", 1.0)
        with torch.no_grad():
            rgb = self.vae.decode(lat / scale).sample
        rgb8 = ((rgb.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        rgb8 = rgb8.reshape(b, f, *rgb8.shape[1:])
        return self.transform(rgb8.cpu(), layout="channels_first").to(x0.device)


def load_vae(path: PathLike) -> nn.Module:
    """An AutoencoderKL from a folder (or a pipeline's ``vae/``), or a hub id: from a pipeline
    repo only ``vae/`` is fetched."""
    from diffusers import AutoencoderKL

    from mmvgm.checkpoint.hub import resolve_model
    from mmvgm.progress import library_bars_off

    path = resolve_model(path, ("vae",), ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"))
    folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise CheckpointError("no AutoencoderKL here (expected config.json, or a pipeline with vae/)", path)
    try:
        with library_bars_off():
            vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the VAE: {' '.join(str(exc).split())[:300]}", folder) from None
    return vae.eval().requires_grad_(False)


class LVDModel(nn.Module):
    """A trained LVD detector bundle: ``probs(x0, step)``, ``flags(x0, step)``; callable as a guard detector.

    Per-step bundles (up to 250 models) load each model on first use, not all at once.
    """

    def __init__(self, cfg: Mapping[str, Any], root: Optional[PathLike] = None,
                 device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.cfg = copy.deepcopy(dict(cfg))
        self.mode = self.cfg["mode"]
        if self.mode not in MODES:
            raise InputError(f"--mode must be one of {MODES}, got '{self.mode}'")
        self.categories: List[str] = list(self.cfg["categories"])
        self.steps: List[int] = [int(s) for s in self.cfg["steps"]]
        self.root = None if root is None else Path(root)
        self.adapter = InputAdapter(self.cfg["input"], self.cfg.get("latent_stats"), self.cfg.get("vae"),
                                    self.cfg["backbone"].get("preprocess")).to(device or torch.device("cpu"))
        self.nets = nn.ModuleDict()
        # conditioned + latent on CUDA: each input shape is captured once as a CUDA graph and
        # replayed (``lvd.graphs``); set False to always run eagerly
        self.use_cuda_graphs = True
        self._graphs = GraphCache()

    # -- structure
    def net_keys(self) -> List[str]:
        return net_keys(self.cfg)

    def new_net(self) -> LVDNet:
        outputs = 1 if self.mode == "per-step" else len(self.categories)
        return LVDNet(self.cfg["backbone"], outputs, conditioned=self.mode == "conditioned")

    def net(self, key: str) -> LVDNet:
        if key not in self.nets:
            if self.root is None:
                raise InputError(f"model '{key}' is neither trained nor saved")
            self.nets[key] = self._load_net(key)
        return self.nets[key]

    def release(self, step: int) -> None:
        """Unload the per-step networks of ``step`` (read again from disk on next use): a per-step
        bundle holds up to 250 backbones, more than a GPU needs to keep when steps are scored in turn."""
        if self.mode == "per-step" and self.root is not None:
            for key in (per_step_key(c, step) for c in self.categories):
                if key in self.nets:
                    del self.nets[key]

    def _load_net(self, key: str) -> LVDNet:
        from safetensors.torch import load_file

        rel = self.cfg.get("files", {}).get(key)
        if rel is None:
            raise CheckpointError(f"lvd.yaml lists no weights for '{key}'", self.root)
        path = self.root / rel
        try:
            state = load_file(str(path))
        except FileNotFoundError:
            raise CheckpointError("model weights are missing", path) from None
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
            raise CheckpointError(f"cannot read weights: {exc}", path) from None
        net = self.new_net()
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"weights do not fit the model: missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]}", path)
        return net.to(self.device).eval()

    @property
    def device(self) -> torch.device:
        """Where the adapter's tensors are, so it follows ``.to()``, ``.cuda()``...; lazily loaded nets go there."""
        for tensor in itertools.chain(self.adapter.buffers(), self.adapter.parameters()):
            return tensor.device
        return torch.device("cpu")

    @property
    def thresholds(self) -> Dict[str, Any]:
        return self.cfg.setdefault("thresholds", {})

    def covers(self, step: int) -> bool:
        return self.mode == "conditioned" or step in self.steps

    # -- scoring
    @torch.no_grad()
    def probs(self, x0: torch.Tensor, step: int) -> torch.Tensor:
        """(B, K) unsafe probability per category for x0 latents (B, C, F, H, W) of one step."""
        if not self.covers(step):
            raise InputError(f"the per-step models cover steps {self.steps}, not step {step}; "
                             "train them for every step the rule reads (or use --mode conditioned)")
        from mmvgm.runtime import autocast_dtype

        x0 = x0.to(self.device)
        amp = autocast_dtype(self.device)  # bf16 on CUDA: the guard runs inside every denoising step
        if self.mode == "conditioned":
            net = self.net("conditioned")
            steps = torch.full((x0.shape[0],), step, device=x0.device)

            def conditioned(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
                # no autocast weight cache: a captured graph must not keep casts made while capturing
                with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None, cache_enabled=False):
                    return torch.sigmoid(net(self.adapter(x), s).float())

            graphable = self.use_cuda_graphs and self.adapter.kind == "latent" and not net.training
            return self._graphs(conditioned, x0, steps, owner=net) if graphable else conditioned(x0, steps)
        frames = self.adapter(x0)
        with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
            cols = [self.net(per_step_key(c, step))(frames) for c in self.categories]
            return torch.sigmoid(torch.cat(cols, dim=1).float())

    def threshold_vector(self, step: int) -> torch.Tensor:
        th = self.thresholds
        if self.mode == "conditioned":
            values = [th.get(c, 0.5) for c in self.categories]
        else:
            values = [th.get(c, {}).get(str(step), th.get(c, {}).get(step, 0.5)) for c in self.categories]
        return torch.tensor(values, dtype=torch.float32)

    @torch.no_grad()
    def flags(self, x0: torch.Tensor, step: int) -> torch.Tensor:
        """(B,) bool: the step is unsafe if any category's probability reaches its threshold."""
        p = self.probs(x0, step)
        return (p >= self.threshold_vector(step).to(p.device)).any(dim=1)

    def forward(self, x0: torch.Tensor, step: int) -> torch.Tensor:  # the LatentGuard detector protocol
        return self.flags(x0, step)

    # -- persistence
    def save_net(self, out: PathLike, key: str, net: LVDNet) -> str:
        """Write one network's weights (atomic) and record the file in the config."""
        from safetensors.torch import save_file

        from mmvgm.io.atomic import atomic_path

        rel = "model.safetensors" if key == "conditioned" else f"per_step/{key}.safetensors"
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with atomic_path(Path(out) / rel) as tmp:
            save_file(state, str(tmp), metadata={"format": FORMAT})
        self.cfg.setdefault("files", {})[key] = rel
        return rel

    def save_config(self, out: PathLike) -> Path:
        import yaml

        from mmvgm.io.atomic import write_text_atomic

        cfg = {"format": FORMAT, **{k: v for k, v in self.cfg.items() if k != "format"}}
        return write_text_atomic(Path(out) / "lvd.yaml", yaml.safe_dump(yaml_safe(cfg), sort_keys=False))

    @classmethod
    def load(cls, path: PathLike, device: Optional[str] = None) -> "LVDModel":
        from mmvgm.runtime import pick_device

        path = Path(path)
        if not (path / "lvd.yaml").is_file():
            raise CheckpointError("not an LVD model directory (no lvd.yaml); train one with "
                                  "`mmvgm lvd-train`", path)
        cfg = load_yaml(path / "lvd.yaml")
        if cfg.get("format") != FORMAT:
            raise CheckpointError(f"lvd.yaml is not an {FORMAT} file", path)
        missing = [k for k in net_keys(cfg) if k not in cfg.get("files", {})]
        if missing:
            raise CheckpointError(f"lvd.yaml lists no weights for {missing[:3]}", path)
        model = cls(cfg, root=path, device=pick_device(device)).eval()
        if model.mode == "conditioned":
            model.net("conditioned")  # fail now, not mid-generation
        return model


def net_keys(cfg: Mapping[str, Any]) -> List[str]:
    if cfg["mode"] == "conditioned":
        return ["conditioned"]
    return [per_step_key(c, s) for c in cfg["categories"] for s in cfg["steps"]]


def per_step_key(category: str, step: int) -> str:
    return f"{category}_step{int(step):02d}"


def load_lvd_model(path: PathLike, device: Optional[str] = None) -> LVDModel:
    """Load a bundle written by ``mmvgm lvd-train`` (CPU or CUDA; no pickle)."""
    return LVDModel.load(path, device)
