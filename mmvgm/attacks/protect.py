"""Protection of images against image-to-video misuse: L-inf PGD on the I2V model's encoders.

``EmbeddingPGD`` moves the embeddings of an image (CLIP image embedding, VAE latent, ...)
inside an L-inf ball of radius ``eps`` in [0,1] pixel space:

* directed (a target image):  minimise  sum_k w_k (1 - cos(E_k(x), E_k(target))) + w_p LPIPS(x, x0)
* undirected (no target):     minimise -sum_k w_k (1 - cos(E_k(x), E_k(x0)))     + w_p LPIPS(x, x0)

so the perceptual term is always a *penalty* (the research code ascended it in undirected mode).
The default schedule is ``momentum``: signed steps along the accumulated L1-normalised gradient
(MI-FGSM) with a cosine-decayed step size; ``adam`` takes Adam-normalised steps instead; ``sign``
is the research schedule (fixed-step sign-PGD). ``protect()`` is the one-call API on arrays/tensors.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from mmvgm.attacks.budget import parse_eps, parse_fraction, parse_positive_int
from mmvgm.attacks.encoders import ImageEncoder, build_encoder
from mmvgm.attacks.quality import image_metrics, json_number, lpips_distance
from mmvgm.errors import InputError

Image = Union[np.ndarray, torch.Tensor]

# ---------------------------------------------------------------- EOT (expectation over transforms)


def _jpeg_straight_through(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Real JPEG in the forward pass, identity gradient in the backward pass."""
    from mmvgm.io.image import jpeg_roundtrip

    quality = int(torch.randint(50, 96, (1,), generator=gen))
    u8 = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = torch.from_numpy(np.stack([jpeg_roundtrip(img, quality) for img in u8])).permute(0, 3, 1, 2).to(x) / 255
    return x + (out - x).detach()


def _random_resize(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Down-scale by a random factor in [0.5, 1) and back (differentiable)."""
    scale = 0.5 + 0.5 * float(torch.rand((1,), generator=gen))
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))),
                          mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The ``blur:SIGMA`` purification, differentiably: separable Gaussian with cv2.GaussianBlur's
    kernel size for 8-bit images (round(6 sigma + 1), made odd) and its reflect-101 borders."""
    radius = min((int(round(sigma * 6 + 1)) | 1) // 2, x.shape[-2] - 1, x.shape[-1] - 1)  # reflect needs radius < side
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k, c = k / k.sum(), x.shape[1]
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _random_blur(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gaussian blur of a random sigma in [0.5, 1.5) pixels: around purify's default ``blur:1``."""
    return gaussian_blur(x, 0.5 + float(torch.rand((1,), generator=gen)))


def _random_noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise of a random sigma in [0.01, 0.03) ([0,1] units, around ``noise:0.02``), then
    clipped to [0,1] and rounded to 8 bits as that purification does. Clip and rounding pass the
    gradient straight through: a hard clamp would zero it wherever the noise crossed 0 or 1."""
    sigma = 0.01 + 0.02 * float(torch.rand((1,), generator=gen))
    noisy = x + sigma * torch.randn(x.shape, generator=gen).to(x)  # drawn on the CPU: the same on every device
    return noisy + ((noisy.clamp(0, 1) * 255).round() / 255 - noisy).detach()


# The purifications of protect-eval --purify that are differentiable or can be approximated.
# upscale (a diffusion upscaler) and diffpure (img2img) would need a pipeline's denoising loop in
# every step's graph; resize and noise together stand in for noisy upscaling.
EOT_TRANSFORMS: Dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "jpeg": _jpeg_straight_through,
    "resize": _random_resize,
    "blur": _random_blur,
    "noise": _random_noise,
}


def parse_eot(value: Union[str, Sequence[str], None]) -> Tuple[str, ...]:
    """``"jpeg,resize"`` -> ("jpeg", "resize"); unknown names raise InputError naming the known ones."""
    if not value:
        return ()
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    bad = [n for n in names if n not in EOT_TRANSFORMS]
    if bad:
        raise InputError(f"unknown EOT transform '{bad[0]}'; known: {', '.join(EOT_TRANSFORMS)}")
    return tuple(dict.fromkeys(names))


# ---------------------------------------------------------------- update rules (schedules)


def _adam(delta, grad, state, t, alpha, beta1, beta2=0.999):
    """delta - alpha * Adam direction (per-pixel normalised gradient, bias-corrected)."""
    if not state:
        state["m"], state["v"] = torch.zeros_like(grad), torch.zeros_like(grad)
    m, v = state["m"].mul_(beta1).add_(grad, alpha=1 - beta1), state["v"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bc1, bc2 = 1 - beta1 ** (t + 1), 1 - beta2 ** (t + 1)
    return delta.addcdiv_(m, v.sqrt().add_(1e-12), value=-alpha * math.sqrt(bc2) / bc1)


def _momentum(delta, grad, state, t, alpha, mu):
    """MI-FGSM: sign of the accumulated L1-normalised gradient."""
    norm = grad.abs().flatten(1).mean(1).clamp_min(1e-20).view(-1, 1, 1, 1)
    m = state["m"] = mu * state.get("m", 0) + grad / norm
    return delta.sub_(alpha * m.sign())


def _sign(delta, grad, state, t, alpha, mu):
    return delta.sub_(alpha * grad.sign())


SCHEDULES = {"adam": _adam, "momentum": _momentum, "sign": _sign}
DECAYED = {"adam", "momentum"}  # the research schedule keeps a fixed step


def default_step_size(schedule: str, eps: float) -> float:
    """momentum: 2 eps, adam: eps (both cosine-decayed); sign: the research code's fixed 0.5/255
    (its "1/255" in [-1,1] space). momentum's 2 eps: with eps/4 or eps, undirected runs stopped
    short of the research schedule's shift on some images (benchmarks/README.md)."""
    return {"adam": eps, "momentum": 2 * eps}.get(schedule, 0.5 / 255)


# ---------------------------------------------------------------- per-image randomness


class PerImageRandom(TorchFunctionMode):
    """Inside it, ``torch.randn_like`` / ``torch.rand_like`` of a tensor whose first dimension
    is the batch draw each image's slice from that image's generator (on the CPU, then moved).

    So the encoder's own noise (SVD's conditioning noise) that an image gets in a batch is what
    it gets alone with the same seed. Other random calls use the global generator as usual.
    """

    _DRAWS = {torch.randn_like: torch.randn, torch.rand_like: torch.rand}

    def __init__(self, gens: Sequence[torch.Generator]) -> None:
        super().__init__()
        self.gens, self.draws = list(gens), 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        like = args[0] if args else None
        if func in self._DRAWS and isinstance(like, torch.Tensor) and like.ndim and like.shape[0] == len(self.gens):
            draw, self.draws = self._DRAWS[func], self.draws + 1
            out = torch.cat([draw((1, *like.shape[1:]), generator=g) for g in self.gens])
            return out.to(device=kwargs.get("device") or like.device, dtype=kwargs.get("dtype") or like.dtype)
        return func(*args, **kwargs)


# ---------------------------------------------------------------- the attack


class EmbeddingPGD:
    """L-inf PGD on an image encoder's embeddings (torchattacks-style: ``attack(images, target)``).

    ``images``/``target``: float (B,3,H,W) in [0,1] (a target of another size is resized).
    Returns the adversarial batch (float, in the eps ball, in [0,1]); keeps the per-image
    best iterate. ``callback(step, loss)`` is called after every step (progress bars).
    """

    def __init__(self, encoder: ImageEncoder, eps: float = 4 / 255, steps: int = 200,
                 step_size: Optional[float] = None, schedule: str = "momentum", momentum: float = 0.5,
                 random_start: bool = True, eot: Sequence[str] = (), lpips: Optional[nn.Module] = None,
                 lpips_weight: float = 1.0, weights: Optional[Dict[str, float]] = None, seed: int = 0,
                 callback: Optional[Callable[[int, float], None]] = None) -> None:
        if schedule not in SCHEDULES:
            raise InputError(f"unknown schedule '{schedule}'; known: {', '.join(SCHEDULES)}")
        self.encoder, self.eps, self.steps = encoder, float(eps), int(steps)
        self.schedule, self.momentum, self.random_start = schedule, float(momentum), bool(random_start)
        self.step_size = float(step_size) if step_size else default_step_size(schedule, self.eps)
        self.eot, self.lpips, self.lpips_weight = parse_eot(eot), lpips, float(lpips_weight)
        self.weights = {**encoder.weights, **(weights or {})}
        self.seed, self.callback = int(seed), callback
        self._draws_noise: Optional[bool] = None  # whether the encoder draws noise: found in a forward's first step

    def __call__(self, images: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward(images, target)

    def forward(self, images: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
        torch.manual_seed(self.seed)  # randomness the encoder draws outside randn_like / rand_like
        gens = [torch.Generator().manual_seed(self.seed) for _ in range(images.shape[0])]
        self._draws_noise = None
        x0 = images.detach()
        ref = self.embed(x0 if target is None else match_size(target, x0))
        sign = 1.0 if target is not None else -1.0  # directed: toward the target; undirected: away
        delta = torch.zeros_like(x0)
        if self.random_start:
            delta = torch.cat([torch.rand((1, *x0.shape[1:]), generator=g) for g in gens]).to(x0) * 2 - 1
            delta = delta * self.eps
        lo, hi = (-x0).clamp(min=-self.eps), (1 - x0).clamp(max=self.eps)  # the ball within [0,1]
        delta = torch.clamp(delta, lo, hi)
        best, best_loss, state = delta.clone(), torch.full((x0.shape[0],), math.inf, device=x0.device), {}
        for t in range(self.steps):
            delta.requires_grad_(True)
            loss = self.objective(x0 + delta, x0, ref, sign, gens)
            grad, = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                loss = loss.detach()
                best = torch.where((loss < best_loss).view(-1, 1, 1, 1), delta, best)
                best_loss = torch.minimum(loss, best_loss)
                delta = SCHEDULES[self.schedule](delta.detach(), grad, state, t, self.alpha(t), self.momentum)
                delta = torch.clamp(delta, lo, hi)
            if self.callback is not None:
                self.callback(t, float(loss.mean()))
        with torch.no_grad():  # the last iterate has not been scored yet
            last = self.objective(x0 + delta, x0, ref, sign, gens)
            best = torch.where((last < best_loss).view(-1, 1, 1, 1), delta, best)
        return (x0 + best).clamp(0, 1).detach()

    def alpha(self, t: int) -> float:
        """The step size of step ``t``: the same for every image of a batch."""
        if self.schedule not in DECAYED:
            return self.step_size
        return self.step_size * 0.5 * (1 + math.cos(math.pi * t / self.steps))

    def objective(self, x, x0, ref, sign, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """Per-image loss to minimise. EOT transforms what the encoder sees; LPIPS judges the
        image that is saved, so it compares the untransformed ``x`` with ``x0``. Each image's
        random draws come from its own generator, so a batch gives what each image gives alone."""
        seen = torch.cat([self.transform(x[i:i + 1], g) for i, g in enumerate(gens)]) if self.eot else x
        if self._draws_noise is False:  # every torch call through the mode costs time: skip it when idle
            emb = self.encoder(seen)
        else:
            with PerImageRandom(gens) as noise:
                emb = self.encoder(seen)
            self._draws_noise = noise.draws > 0
        dist = sum(self.weights.get(k, 1.0) * (1 - F.cosine_similarity(emb[k], ref[k], dim=1)) for k in ref)
        loss = sign * dist
        if self.lpips is not None and self.lpips_weight > 0:
            loss = loss + self.lpips_weight * lpips_distance(self.lpips, x, x0)
        return loss

    def transform(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One image (1,3,H,W) through this step's EOT transform drawn from ``gen`` (or none)."""
        for name in self.eot_choice(gen):
            x = EOT_TRANSFORMS[name](x, gen)
        return x

    def eot_choice(self, gen: torch.Generator) -> Tuple[str, ...]:
        """One random transform per step (or none), so EOT costs no extra encoder passes."""
        if not self.eot:
            return ()
        pick = int(torch.randint(0, len(self.eot) + 1, (1,), generator=gen))
        return () if pick == len(self.eot) else (self.eot[pick],)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Deterministic embeddings (the encoder's noise off): references and reports."""
        return embed(self.encoder, images)


def _with_torchattacks(cls):
    """Make ``cls`` a torchattacks ``Attack`` when that optional package is installed."""
    try:
        from torchattacks.attack import Attack
    except Exception:  # noqa: BLE001 - absent or broken optional extra: the core path stays plain
        return cls

    class TorchattacksEmbeddingPGD(cls, Attack):
        __doc__ = cls.__doc__

        def __init__(self, encoder, *args, **kwargs):
            cls.__init__(self, encoder, *args, **kwargs)
            try:
                Attack.__init__(self, "EmbeddingPGD", encoder)
            except Exception:  # noqa: BLE001 - version differences of the base's bookkeeping
                pass

        def __call__(self, images, target=None):
            return cls.forward(self, images, target)

    TorchattacksEmbeddingPGD.__name__ = TorchattacksEmbeddingPGD.__qualname__ = cls.__name__
    return TorchattacksEmbeddingPGD


EmbeddingPGD = _with_torchattacks(EmbeddingPGD)


# ---------------------------------------------------------------- helpers


@torch.no_grad()
def embed(encoder: ImageEncoder, images: torch.Tensor) -> Dict[str, torch.Tensor]:
    stochastic, encoder.stochastic = encoder.stochastic, False
    try:
        return {k: v.detach() for k, v in encoder(images).items()}
    finally:
        encoder.stochastic = stochastic


def cosines(encoder: ImageEncoder, images: torch.Tensor, ref: Dict[str, torch.Tensor]) -> Dict[str, List[float]]:
    emb = embed(encoder, images)
    return {k: F.cosine_similarity(emb[k], ref[k], dim=1).cpu().tolist() for k in ref}


def match_size(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The target resized to the input's size (and batch-broadcast)."""
    target = target.to(like)
    if tuple(target.shape[-2:]) != tuple(like.shape[-2:]):
        target = F.interpolate(target, size=like.shape[-2:], mode="bilinear", align_corners=False,
                               antialias=True).clamp(0, 1)
    if target.shape[0] == 1 and like.shape[0] > 1:
        target = target.expand(like.shape[0], -1, -1, -1)
    if target.shape[0] != like.shape[0]:
        raise InputError(f"target batch {target.shape[0]} does not match image batch {like.shape[0]}")
    return target


def quantize_to_ball(adv: torch.Tensor, original_u8: torch.Tensor, eps: float) -> torch.Tensor:
    """Round to 8 bits, then clip into the eps ball around the 8-bit original (so L-inf <= eps)."""
    levels = math.floor(eps * 255 + 1e-6)
    q = (adv * 255).round()
    lo, hi = original_u8.float() - levels, original_u8.float() + levels
    return torch.minimum(torch.maximum(q, lo), hi).clamp(0, 255).to(torch.uint8)


def _to_batch(image: Union[Image, Sequence[np.ndarray]], what: str) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(float (B,3,H,W) in [0,1], the uint8 (B,3,H,W) originals or None for a float tensor)."""
    if isinstance(image, (list, tuple)):
        if not image:
            raise InputError(f"no {what}s to protect")
        if not all(isinstance(one, np.ndarray) for one in image):
            raise InputError(f"a list of {what}s must hold uint8 (H,W,3) arrays")
        if len({one.shape for one in image}) > 1:
            sizes = ", ".join(dict.fromkeys(f"{a.shape[1]}x{a.shape[0]}" for a in image if a.ndim >= 2))
            raise InputError(f"the {what}s of one batch must have one size, got {sizes}")
        u8 = torch.cat([_to_batch(one, what)[1] for one in image])
        return u8.float() / 255, u8
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"{what} array must be uint8 (H,W,3) RGB, got {image.dtype} {image.shape}")
        u8 = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None]
        return u8.float() / 255, u8
    if isinstance(image, torch.Tensor):
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
            raise InputError(f"{what} tensor must be float (B,3,H,W) in [0,1], got {image.dtype} {tuple(image.shape)}")
        if image.numel() and (image.min() < 0 or image.max() > 1):
            raise InputError(f"{what} tensor values must be in [0,1]")
        return image.float(), None
    raise InputError(f"{what} must be a uint8 (H,W,3) array, a list of them of one size, or a float "
                     f"(B,3,H,W) tensor, got {type(image).__name__}")


@dataclass
class ProtectOptions:
    """Validated attack options (from the config file, CLI or keyword arguments)."""
    eps: float = 4 / 255
    steps: int = 200
    step_size: Optional[float] = None
    schedule: str = "momentum"  # signed steps fill the L-inf ball; adam's fell short undirected (bench_protect.py)
    momentum: float = 0.5
    random_start: bool = True
    eot: Tuple[str, ...] = ()
    lpips_weight: float = 1.0
    encoder_weights: Dict[str, float] = field(default_factory=dict)
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Dict) -> "ProtectOptions":
        from mmvgm.attacks.budget import parse_bool
        from mmvgm.config import check_keys

        check_keys(cfg, list(cls.__dataclass_fields__) + ["encoder", "encoder_options"], "protect config")
        schedule = str(cfg.get("schedule", cls.schedule))
        if schedule not in SCHEDULES:
            raise InputError(f"unknown schedule '{schedule}'; known: {', '.join(SCHEDULES)}")
        step = cfg.get("step_size")
        step_size = None if step in (None, "", "auto") else parse_fraction(step, "step size")
        if step_size is not None and step_size <= 0:
            raise InputError(f"step size must be > 0, got {step}")
        weight = parse_fraction(cfg.get("lpips_weight", 1.0), "lpips weight")
        if weight < 0:
            raise InputError(f"lpips weight must be >= 0, got {weight}")
        momentum = parse_fraction(cfg.get("momentum", 0.5), "momentum")
        if momentum < 0 or (schedule == "adam" and momentum >= 1):  # adam's bias correction divides by 1 - beta1^t
            raise InputError(f"momentum must be in [0, {'1)' if schedule == 'adam' else 'inf)'}, got {momentum}")
        weights = cfg.get("encoder_weights") or {}
        if not isinstance(weights, Mapping):
            raise InputError(f"encoder_weights must map embedding names to weights, e.g. {{clip: 1.0}}, got {weights!r}")
        return cls(eps=parse_eps(cfg.get("eps", "4/255")), steps=parse_positive_int(cfg.get("steps", 200), "steps"),
                   step_size=step_size, schedule=schedule,
                   momentum=momentum,
                   random_start=parse_bool(cfg.get("random_start", True), "random_start"),
                   eot=parse_eot(cfg.get("eot")), lpips_weight=weight,
                   encoder_weights={str(k): parse_fraction(v, f"encoder weight of {k}") for k, v in weights.items()},
                   seed=parse_positive_int(cfg.get("seed", 0), "seed", allow_zero=True))


def protect(image: Union[Image, Sequence[np.ndarray]], encoder: Union[str, nn.Module, ImageEncoder] = "svd",
            eps: Union[str, float, None] = None, steps: Optional[int] = None, target: Optional[Image] = None, *,
            model_path=None, lpips: Optional[nn.Module] = None, device=None, callback=None,
            config: str = "default", **options) -> Tuple[Union[Image, List[np.ndarray]], Union[dict, List[dict]]]:
    """Protect ``image`` against image-to-video misuse; returns ``(protected, report)``.

    ``image``: uint8 (H,W,3) RGB array -> a uint8 array back (rounded into the eps ball, so its
    8-bit L-inf distance is <= eps); a list of such arrays of one size -> a list back, attacked
    as one batch; or float (B,3,H,W) in [0,1] -> a float tensor back. Every image of a batch
    draws its randomness as it does alone (same ``seed``), so a batch changes its result only by
    the floating-point rounding of the encoder's batched kernels.
    ``encoder``: ``"svd"``, ``"clip"``, ``"vae"``, ``"timm:NAME"`` (with ``model_path``) or any
    ``nn.Module``. ``target``: directed mode (resized to the image). ``eps``, ``steps`` and
    ``options`` (any key of ``configs/protect/default.yaml``: ``step_size``, ``schedule``, ``eot``,
    ``seed``, ...) override ``config`` where given (default eps 4/255, steps 200).
    The report is a dict (one image) or a list of dicts (a list, or a batch tensor).
    """
    from mmvgm.attacks.files import resolve_options

    cfg, opts = resolve_options(config, eps=eps, steps=steps, **options)
    if not isinstance(encoder, ImageEncoder):
        from mmvgm.runtime import pick_device

        encoder = build_encoder(encoder, model_path=model_path, device=pick_device(device),
                                **(cfg.get("encoder_options") or {}))
    dev = encoder.device
    x0, original_u8 = _to_batch(image, "image")
    x0 = x0.to(dev)
    tgt = match_size(_to_batch(target, "target")[0], x0) if target is not None else None
    if original_u8 is not None and math.floor(opts.eps * 255 + 1e-6) < 1:
        raise InputError(f"eps {opts.eps:.5f} is below one 8-bit level (1/255): the image cannot change")
    attack = EmbeddingPGD(encoder, eps=opts.eps, steps=opts.steps, step_size=opts.step_size,
                          schedule=opts.schedule, momentum=opts.momentum, random_start=opts.random_start,
                          eot=opts.eot, lpips=lpips, lpips_weight=opts.lpips_weight,
                          weights=opts.encoder_weights, seed=opts.seed, callback=callback)
    start = time.perf_counter()
    adv = attack(x0, tgt)
    seconds = time.perf_counter() - start
    if original_u8 is None:
        reports = _reports(encoder, x0, adv, _hwc(x0), _hwc(adv), tgt, lpips, attack, seconds)
        return adv.to(image.device), (reports[0] if len(reports) == 1 else reports)
    adv_u8 = quantize_to_ball(adv, original_u8.to(dev), opts.eps)
    arrays = _hwc(adv_u8)  # measured on the 8-bit values that get saved
    reports = _reports(encoder, x0, adv_u8.float() / 255, _hwc(original_u8), arrays, tgt, lpips, attack, seconds)
    return (arrays, reports) if isinstance(image, (list, tuple)) else (arrays[0], reports[0])


def _hwc(batch: torch.Tensor) -> List[np.ndarray]:
    return [b.permute(1, 2, 0).cpu().numpy() for b in batch]


def _reports(encoder: ImageEncoder, x0: torch.Tensor, adv: torch.Tensor, originals: List[np.ndarray],
             protected: List[np.ndarray], tgt: Optional[torch.Tensor], lpips: Optional[nn.Module],
             attack: EmbeddingPGD, seconds: float) -> List[dict]:
    """One report per image of the batch: the attack's settings, image metrics (of the HWC
    ``originals`` and ``protected``; exact 8-bit levels for uint8) and cosines."""
    ref = embed(encoder, tgt if tgt is not None else x0)
    before, after = cosines(encoder, x0, ref), cosines(encoder, adv, ref)
    lp = lpips_distance(lpips, adv, x0).cpu().tolist() if lpips is not None else None
    reports = []
    for i in range(x0.shape[0]):
        m = image_metrics(originals[i], protected[i])
        reports.append({
            "mode": "directed" if tgt is not None else "undirected", "eps": attack.eps, "steps": attack.steps,
            "schedule": attack.schedule, "step_size": attack.step_size, "seed": attack.seed,
            "seconds": round(seconds / x0.shape[0], 3), "linf": m["linf"], "l2": json_number(m["l2"]),
            "psnr": json_number(m["psnr"]), "ssim": json_number(m["ssim"]),
            "lpips": None if lp is None else json_number(lp[i]),
            "encoders": {k: {"cos_before": json_number(before[k][i]), "cos_after": json_number(after[k][i])}
                         for k in ref},
        })
    return reports
