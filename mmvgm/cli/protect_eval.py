"""``mmvgm protect-eval``: how much of a protection survives purification, and what it does to the
video a local image-to-video pipeline generates."""
from __future__ import annotations

import json
from typing import Callable, Dict, List, Optional

import click

#: ``mmvgm.attacks.purify.DEFAULT_PURIFY``, spelled out so that ``--help`` needs no torch import
#: (a test keeps the two equal).
DEFAULT_PURIFY = "jpeg:75,jpeg:50,resize:0.5,blur:1"


@click.command(name="protect-eval")
@click.argument("original", type=click.Path())
@click.argument("protected", type=click.Path())
@click.option("--target", "-t", type=click.Path(), default=None,
              help="The target of a directed protection (effects are measured toward it).")
@click.option("--compare", "compare", type=click.Path(), default=None,
              help="A second protected image (e.g. made with --eot): its survival is shown beside the first's.")
@click.option("--purify", default=DEFAULT_PURIFY, show_default=True,
              help="Purifications to try: jpeg:Q, resize:S (down and back up), blur:SIGMA, noise:SIGMA, "
                   "upscale:DIR[:NOISE] (StableDiffusionUpscalePipeline), diffpure:DIR:STRENGTH (img2img).")
@click.option("--encoder", "-e", default=None,
              help="auto | svd | wan | cogvideox | ltx | i2vgen | clip | vae | timm:NAME "
                   "[default: guessed from --model-path, as auto for a pipeline folder; svd without one].")
@click.option("--model-path", "-m", type=click.Path(), default=None, envvar="MMVGM_PROTECT_MODEL",
              show_envvar=True, help="Weights: a folder, file or hub id (as for `mmvgm protect`) "
                                     "[default: --pipeline when given].")
@click.option("--pipeline", "-p", default=None,
              help="An image-to-video pipeline (diffusers folder or hub id) to run on both images and compare "
                   "the generated videos, against a noise control of the same L-inf.")
@click.option("--prompt", default="", show_default=True, help="Prompt, for pipelines that take one.")
@click.option("--seed", default="0", show_default=True, help="Seed of the generations and of the noise control.")
@click.option("--steps", default="10", show_default=True, help="Denoising steps of each generation.")
@click.option("--frames", default="8", show_default=True, help="Frames to generate.")
@click.option("--size", default=None, help="HEIGHTxWIDTH to generate at [default: the image's, long side <= 1024, "
                                           "sides floored to multiples of 32].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Also write the JSON to this file.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def command(original: str, protected: str, target: Optional[str], compare: Optional[str], purify: str,
            encoder: Optional[str], model_path: Optional[str], pipeline: Optional[str], prompt: str, seed: str,
            steps: str, frames: str, size: Optional[str], as_json: bool, report: Optional[str], device: str,
            quiet: bool) -> None:
    """Measure how much embedding shift survives each purification, and (--pipeline) how much the
    generated video changes.

    \b
    For each purification p: cos(E(p(protected)), E(ref)) and cos(E(p(original)), E(ref)),
    with ref the target (directed) or the original (undirected); 'effect' is the shift the
    protection adds beyond what p alone does, 'survival' its fraction of the unpurified effect.
    With --pipeline: per-frame PSNR/SSIM and the latent distance between the videos generated
    from the original and the protected image (same seed and prompt), the same for uniform
    noise of the protection's L-inf, and whether the protection beats that control.

    \b
    Examples:
      mmvgm protect-eval photo.png photo.protected.png -m ~/weights/svd
      mmvgm protect-eval photo.png photo.protected.png --target t.png --purify jpeg:90,blur:2 --json
      mmvgm protect-eval photo.png photo.protected.png --pipeline ~/weights/svd --steps 25 --frames 14
      mmvgm protect-eval photo.png plain.png --compare eot.png --purify jpeg:75,upscale:~/weights/x4,diffpure:~/weights/sd15:0.1
    """
    from mmvgm.attacks.budget import parse_positive_int
    from mmvgm.attacks.encoders import build_encoder
    from mmvgm.attacks.files import refuse_input
    from mmvgm.attacks.generation import GenerationSettings, parse_size, pipeline_spec_exists
    from mmvgm.attacks.purify import parse_purify
    from mmvgm.io.image import read_image
    from mmvgm.runtime import pick_device

    purifications = parse_purify(purify)  # refuse bad options before loading models
    settings = GenerationSettings(prompt=prompt, seed=parse_positive_int(seed, "seed", allow_zero=True),
                                  steps=parse_positive_int(steps, "steps"), frames=parse_positive_int(frames, "frames"),
                                  size=parse_size(size))
    if pipeline:
        pipeline_spec_exists(pipeline, "--pipeline")
    inputs = (original, protected) + ((target,) if target else ()) + ((compare,) if compare else ())
    if report:
        refuse_input(report, inputs)
    images = {"original": read_image(original), "protected": read_image(protected),
              **({"target": read_image(target)} if target else {}), **({"compare": read_image(compare)} if compare else {})}
    dev = pick_device(device)
    enc = build_encoder(encoder, model_path=model_path or pipeline, device=dev)  # None: svd, or guessed
    result = {"original": original, "protected": protected, **({"target": target} if target else {}),
              **_survival(images, enc, purify, len(purifications), quiet)}
    if compare:
        result["compare"] = {"protected": compare, **_survival({**images, "protected": images["compare"]}, enc,
                                                               purify, len(purifications), quiet)}
    if pipeline:
        _add_generation(result, images, pipeline, settings, dev, quiet)
    _emit(result, as_json, report)


def _survival(images: Dict, enc, purify: str, count: int, quiet: bool) -> dict:
    from mmvgm.attacks.purify import evaluate_protection
    from mmvgm.progress import make_progress

    with make_progress(disable=quiet or count < 2) as progress:
        task = progress.add_task("purify", total=count)
        return evaluate_protection(images["original"], images["protected"], enc, target=images.get("target"),
                                   purify=purify, on_step=lambda name: progress.advance(task))


def _add_generation(result: dict, images: Dict, pipeline: str, settings, dev, quiet: bool) -> None:
    from mmvgm.attacks.generation import generation_effects, load_pipeline
    from mmvgm.progress import make_progress

    pipe = load_pipeline(pipeline, device=dev)
    protected = [images["protected"]] + ([images["compare"]] if "compare" in images else [])
    with make_progress(disable=quiet) as progress:
        def on_run(name: str, total: int) -> Callable[[], None]:
            task = progress.add_task(name, total=total)
            return lambda: progress.advance(task)

        reports = generation_effects(pipe, images["original"], protected, settings, on_run)
    result["generation"] = {"pipeline_path": pipeline, **reports[0]}
    if "compare" in result:
        result["compare"]["generation"] = {"pipeline_path": pipeline, **reports[1]}


def _emit(result: dict, as_json: bool, report: Optional[str]) -> None:
    from mmvgm.io.atomic import write_json_atomic

    if report:
        write_json_atomic(report, result)
    if as_json:
        click.echo(json.dumps(result))
        return
    if "compare" in result:
        _print_side_by_side(result)
    else:
        _print_survival(result)
    for label, part in (("", result), ("compare: ", result.get("compare") or {})):
        if "generation" in part:
            _print_generation(label, part["generation"])


def _print_survival(result: dict) -> None:
    ref = "target" if "target" in result else "original"
    click.echo(f"{'purification':<14}{'embedding':<12}{'cos(prot,' + ref + ')':>20}{'cos(orig,' + ref + ')':>20}"
               f"{'effect':>10}{'survival':>10}")
    for row in result["results"]:
        for name, r in row["encoders"].items():
            click.echo(f"{row['purification']:<14}{name:<12}{r['cos_protected']:>20.4f}{r['cos_original']:>20.4f}"
                       f"{r['effect']:>10.4f}{_pct(r['survival']):>10}")


def _print_side_by_side(result: dict) -> None:
    from mmvgm.attacks.purify import survival_side_by_side

    rows = survival_side_by_side({"protected": result, "compare": result["compare"]})
    click.echo(f"survival of {result['protected']} (protected) and {result['compare']['protected']} (compare)")
    click.echo(f"{'purification':<24}{'embedding':<12}{'protected':>12}{'compare':>12}")
    for r in rows:
        click.echo(f"{r['purification']:<24}{r['embedding']:<12}{_pct(r['protected']):>12}{_pct(r['compare']):>12}")


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: Optional[float], fmt: str, none: str) -> str:
    return none if value is None else format(value, fmt)


def _print_generation(label: str, gen: dict) -> None:
    s = gen["settings"]
    click.echo(f"\n{label}generated video ({gen['pipeline']}, {s['height']}x{s['width']}, {s['frames']} frames, "
               f"{s['steps']} steps, seed {s['seed']}); latents: {gen['latent_source']}")
    click.echo(f"{'':<12}{'PSNR dB':>10}{'SSIM':>10}{'latent dist':>14}   per-frame PSNR")
    for name in ("protected", "control"):
        r = gen[name]
        frames = " ".join(_num(v, ".1f", "inf") for v in r["psnr"]["per_frame"])
        click.echo(f"{name:<12}{_num(r['psnr']['mean'], '.2f', 'inf'):>10}{_num(r['ssim']['mean'], '.4f', '-'):>10}"
                   f"{_num(r['latent_distance'], '.4f', '-'):>14}   {frames}")
    verdict = "yes" if gen["beats_control"] else "no"
    click.echo(f"beats the control (uniform noise, L-inf {gen['eps'] * 255:.3g}/255): {verdict} "
               f"(" + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in gen["beats_control_by"].items()) + ")")
