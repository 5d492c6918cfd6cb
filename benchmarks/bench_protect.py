"""Benchmark of `mmvgm protect`'s attack schedule, survival of purifications and per-step cost (prints; asserts nothing).

1. Steps ratio: how many steps a schedule (--schedules; default: mmvgm's default, each with its
   default step size, momentum and cosine decay) needs to reach the embedding shift that the
   research schedule (sign-PGD, fixed step 0.5/255 in pixels, i.e. its "1/255" in [-1,1]
   space, 1000 steps, same pixel eps) reaches, / 1000. Goal <= 0.25. A schedule's length
   changes its decay, so each candidate length S is a separate run; the first S in the grid
   at which every image reaches its research shift (less ATOL, the float32 noise of a cosine)
   is reported, with the min over images of (shift / research shift) at each length tried.
2. Survival of purifications (--survival, default jpeg:75,resize:0.5,blur:1,noise:0.02): each schedule's
   protection (default steps, 8-bit PNG values) without EOT and, for each purification, with EOT
   over the transform of its name (``eot=("blur",)`` for blur:1), then
   ``mmvgm.attacks.purify.evaluate_protection``: the share of the embedding shift left after it.
3. Seconds per attack step / seconds of one forward+backward of the same encoder. Goal <= 1.1.

Images: photos that scikit-image ships (a face, a cat, a rocket; each one's target is the next
photo, the last one's a cup of coffee), at --image-size px, attacked as one batch (each image
draws its randomness as it does alone). Encoders:
a tiny CLIP vision tower (random weights, hidden 64, 2 layers, 64 px), timm's ResNet-50 (random
weights, input --resnet-size px) and MTCNN's ONet, a real pretrained network whose weights ship
inside the facenet-pytorch wheel (`pip install --no-deps facenet-pytorch`: its pins would
downgrade torch, numpy and Pillow; its ONet needs none of them), embedding = its 256-d feature
layer at 48 px; skipped with a note when the package is absent.

    python benchmarks/bench_protect.py [--schedules momentum,adam] [--device cuda] [--resnet-size 224]
                                       [--mode directed|undirected|both] [--images 1-3]
                                       [--survival jpeg:75,resize:0.5,blur:1,noise:0.02] [--no-eot]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmvgm.attacks.encoders import CLIPVisionEncoder, ModuleEncoder, TimmEncoder  # noqa: E402
from mmvgm.attacks.protect import EmbeddingPGD, ProtectOptions, embed, parse_eot, quantize_to_ball  # noqa: E402
from mmvgm.attacks.purify import evaluate_protection, parse_purify  # noqa: E402

EPS = 4 / 255
RESEARCH_STEPS = 1000
GRID = (25, 50, 100, 150, 200, 250)
ATOL = 1e-6


def tiny_clip() -> CLIPVisionEncoder:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=64, patch_size=8, projection_dim=32)
    return CLIPVisionEncoder(CLIPVisionModelWithProjection(cfg), size=64, name="clip")


def resnet50(size: int) -> TimmEncoder:
    import timm

    enc = TimmEncoder(timm.create_model("resnet50", pretrained=False, num_classes=0), name="resnet50")
    enc.size = (size, size)
    return enc


class ONetFeatures(nn.Module):
    """MTCNN's ONet (pretrained, from the facenet-pytorch wheel) up to its 256-d feature layer."""

    def __init__(self) -> None:
        super().__init__()
        from facenet_pytorch.models.mtcnn import ONet

        self.net = ONet(pretrained=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = (x * 255 - 127.5) * 0.0078125  # MTCNN's input scaling
        x = n.pool1(n.prelu1(n.conv1(x)))
        x = n.pool2(n.prelu2(n.conv2(x)))
        x = n.pool3(n.prelu3(n.conv3(x)))
        x = n.prelu4(n.conv4(x)).permute(0, 3, 2, 1).contiguous()  # as ONet.forward flattens
        return n.prelu5(n.dense5(x.view(x.shape[0], -1)))


def onet() -> ModuleEncoder:
    return ModuleEncoder(ONetFeatures(), name="onet", size=(48, 48))


def photos(size: int, count: int) -> torch.Tensor:
    """Square crops of scikit-image's sample photos, (count,3,size,size) in [0,1]."""
    import skimage.data as data

    crops = [data.astronaut()[0:256, 128:384], data.chelsea()[:, 50:350], data.rocket()[100:400, 100:400],
             data.coffee()[:, 100:500]][:count]
    batch = torch.cat([F.interpolate(torch.from_numpy(c.copy()).permute(2, 0, 1)[None].float() / 255,
                                     size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                       for c in crops])
    return (batch * 255).round().clamp(0, 255) / 255  # 8-bit values, as read from a file


def shift(encoder, adv, x0, target) -> torch.Tensor:
    """Per image. Directed: gain in cosine to the target. Undirected: 1 - cosine to the original."""
    ref = embed(encoder, target if target is not None else x0)

    def cos(x):
        emb = embed(encoder, x)
        return sum(F.cosine_similarity(emb[k], ref[k]) for k in ref) / len(ref)

    return cos(adv) - cos(x0) if target is not None else 1 - cos(adv)


def run(encoder, x0, target, steps, **kw) -> torch.Tensor:
    return shift(encoder, EmbeddingPGD(encoder, eps=EPS, steps=steps, seed=0, **kw)(x0, target), x0, target)


def research_shift(encoder, x0, target) -> tuple:
    t0 = time.perf_counter()
    research = run(encoder, x0, target, RESEARCH_STEPS, schedule="sign", step_size=0.5 / 255,
                   random_start=target is None)  # undirected needs a start off x0 (no gradient at x0)
    return research, time.perf_counter() - t0


def steps_to_reach(encoder, x0, target, research, schedule: str) -> tuple:
    """(first grid length at which every image reaches its research shift or None, [(S, min ratio)])."""
    seen = []
    for s in GRID:
        value = run(encoder, x0, target, s, schedule=schedule)  # its default step size, decay, momentum
        seen.append((s, float((value / research).min())))
        if bool((value >= research - ATOL).all()):
            return s, seen
    return None, seen


def survival(encoder, x0, target, schedule: str, eot: tuple, purify: list) -> dict:
    """``{purification: per image, the share of the protection's shift left after it (mean over
    embeddings)}`` for one protection made with ``eot``."""
    attack = EmbeddingPGD(encoder, eps=EPS, steps=ProtectOptions().steps, schedule=schedule, seed=0, eot=eot)
    u8 = (x0 * 255).round().to(torch.uint8)
    adv_u8 = quantize_to_ball(attack(x0, target), u8, EPS)
    hwc = lambda t: t.permute(1, 2, 0).cpu().numpy()  # noqa: E731
    out = {p: [] for p in purify}
    for i in range(x0.shape[0]):
        tgt = hwc((target[i] * 255).round().to(torch.uint8)) if target is not None else None
        rows = evaluate_protection(hwc(u8[i]), hwc(adv_u8[i]), encoder, tgt, purify=purify)["results"]
        for row in rows[1:]:  # after "none", in the order of ``purify``
            out[row["purification"]].append(statistics.mean(
                e["survival"] for e in row["encoders"].values() if e["survival"] is not None))
    return out


def seconds_per_step_ratio(encoder, x0, target, steps: int, repeats: int = 3) -> tuple:
    def fwd_bwd():
        x = x0.clone().requires_grad_(True)
        out = encoder(x)
        sum(v.sum() for v in out.values()).backward()

    def sync():
        if x0.device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        fwd_bwd()
    sync()
    fb = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            fwd_bwd()
        sync()
        fb.append((time.perf_counter() - t) / steps)
    attack = EmbeddingPGD(encoder, eps=EPS, steps=steps, seed=0)
    per_step = []
    for _ in range(repeats):
        t = time.perf_counter()
        attack(x0, target)
        sync()
        per_step.append((time.perf_counter() - t) / steps)
    return statistics.median(per_step), statistics.median(fb)


def bench_encoder(name: str, encoder, x0, tgt, modes, schedules, purify: list) -> None:
    for mode in modes:
        target = tgt if mode == "directed" else None
        research, t_research = research_shift(encoder, x0, target)
        metric = "gain in cos to target" if target is not None else "1 - cos to original"
        print(f"[{name} {mode}] research sign-PGD 1000 steps ({t_research:.0f}s): {metric} per image "
              f"{', '.join(f'{v:.5g}' for v in research.tolist())}")
        for schedule in schedules:
            reached, seen = steps_to_reach(encoder, x0, target, research, schedule)
            ratio = f"{reached / RESEARCH_STEPS:.3f}" if reached else f"> {GRID[-1] / RESEARCH_STEPS:.3f}"
            trail = ", ".join(f"{s}: {v:.5f}" for s, v in seen)
            print(f"[{name} {mode} {schedule}] steps ratio (schedule / research) = {ratio}  (goal <= 0.25); "
                  f"by length, min over images of shift / research shift: {trail}", flush=True)
            plain = survival(encoder, x0, target, schedule, (), purify) if purify else {}
            for spec in purify:
                kind = spec.split(":")[0]
                with_eot = survival(encoder, x0, target, schedule, (kind,), [spec])[spec]
                print(f"[{name} {mode} {schedule}] survival after {spec} ({ProtectOptions().steps} steps), mean over "
                      f"images: without EOT {_figures(plain[spec])}, with --eot {kind} {_figures(with_eot)}", flush=True)
    per_step, fb = seconds_per_step_ratio(encoder, x0, tgt, steps=20)
    print(f"[{name}] seconds per attack step {per_step * 1e3:.1f} ms / forward+backward {fb * 1e3:.1f} ms "
          f"= {per_step / fb:.3f}  (goal <= 1.1)  (batch of {x0.shape[0]})", flush=True)


def _figures(values: list) -> str:
    return f"{statistics.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def survival_specs(text: str) -> list:
    """``"jpeg:75,blur:1"`` -> ["jpeg:75", "blur:1"], as evaluate_protection names them; each kind
    must be an EOT transform too, since it is measured with EOT over its own kind."""
    specs = [str(p) for p in parse_purify(text)[1:]]
    parse_eot([s.split(":")[0] for s in specs])
    return specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--resnet-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=96, help="side of the (square) test images")
    ap.add_argument("--images", type=int, default=3, choices=range(1, 4), help="photos in the batch (1-3)")
    ap.add_argument("--mode", choices=["directed", "undirected", "both"], default="both")
    ap.add_argument("--encoders", default="clip,onet,resnet50")
    ap.add_argument("--schedules", default=ProtectOptions().schedule,
                    help="schedules to measure against the research one, e.g. momentum,adam [default: the default]")
    ap.add_argument("--survival", default="jpeg:75,resize:0.5,blur:1,noise:0.02",
                    help="purifications to measure survival after, each without EOT and with EOT over its "
                         "kind (jpeg, resize, blur or noise) [default: jpeg:75,resize:0.5,blur:1,noise:0.02]")
    ap.add_argument("--no-eot", action="store_true", help="skip the survival runs")
    args = ap.parse_args()
    purify = [] if args.no_eot else survival_specs(args.survival)
    dev = torch.device(args.device)
    builders = {"clip": tiny_clip, "onet": onet, "resnet50": lambda: resnet50(args.resnet_size)}
    pics = photos(args.image_size, args.images + 1)
    x0, tgt = pics[:-1].to(dev), pics.roll(-1, 0)[:-1].to(dev)  # each image's target: the next photo
    modes = ["directed", "undirected"] if args.mode == "both" else [args.mode]
    print(f"device {dev}, torch threads {torch.get_num_threads()}, {args.images} photos of {args.image_size}px, "
          f"eps 4/255, resnet50 input {args.resnet_size}px, default schedule {ProtectOptions().schedule}, "
          f"grid {GRID}")
    start = time.perf_counter()
    for name in args.encoders.split(","):
        torch.manual_seed(0)  # the random-weight encoders are the same in every run
        try:
            encoder = builders[name]().to(dev).eval().requires_grad_(False)
        except ImportError as exc:
            print(f"[{name}] skipped: {exc} (pip install --no-deps facenet-pytorch)")
            continue
        bench_encoder(name, encoder, x0, tgt, modes, args.schedules.split(","), purify)
    print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
