"""``mmvgm protect``: add an invisible perturbation that misleads image-to-video models."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import click


@click.command(name="protect")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--batch-size", "-b", default=None,
              help="Images of one size attacked together [default: 8 on a GPU, 4 on the CPU]. "
                   "An image's result does not depend on its batch.")
@click.option("--target", "-t", type=click.Path(), default=None,
              help="Directed mode: pull the embeddings toward this image (resized to each input). "
                   "Without it: push them away from the original.")
@click.option("--eps", default=None, help="L-inf budget in [0,1] pixels: 4/255, 2/255, 0.0157 [default: 4/255]. "
                                          "The research code's '4/255' was in [-1,1] space, i.e. 2/255 here.")
@click.option("--steps", default=None, help="Attack steps [default: 200].")
@click.option("--step-size", default=None, help="Initial step (e.g. 1/255) [default: 2 eps for momentum, eps for adam, 0.5/255 for sign].")
@click.option("--schedule", type=click.Choice(["adam", "momentum", "sign"]), default=None,
              help="Update rule [default: momentum (MI-FGSM sign steps), cosine-decayed like adam; "
                   "sign = the research schedule].")
@click.option("--encoder", "-e", default=None,
              help="auto | svd | wan | cogvideox | ltx | i2vgen | clip | vae | timm:NAME (auto: from the "
                   "pipeline folder's model_index.json) [default: guessed from --model-path, as auto for a "
                   "pipeline folder; svd without one].")
@click.option("--model-path", "-m", type=click.Path(), default=None, envvar="MMVGM_PROTECT_MODEL",
              show_envvar=True, help="Weights: an image-to-video pipeline folder (SVD, Wan, CogVideoX, LTX-Video, "
                                     "I2VGen-XL), a CLIP or VAE folder, a timm checkpoint, or the hub id "
                                     "of any of them (Wan-AI/Wan2.1-I2V-14B-480P-Diffusers).")
@click.option("--out", "-o", type=click.Path(), default=None,
              help="Output directory (created if missing) or a .png path for a single input "
                   "[default: <stem>.protected.png beside each input].")
@click.option("--eot", default=None,
              help="Expectation over transforms, comma-separated: jpeg (real JPEG, straight-through gradient), "
                   "resize, blur, noise, each a random strength around protect-eval's purification of that "
                   "name; one (or none) per step. upscale and diffpure are not covered (not differentiable "
                   "at a sane cost); resize,noise together approximate noisy upscaling.")
@click.option("--lpips-weight", default=None, help="Weight of the LPIPS penalty [default: 1].")
@click.option("--lpips-weights", type=click.Path(), default=None,
              help="LPIPS AlexNet backbone (torchvision alexnet-owt-7be5be79.pth), or hf://org/name/FILE.pth "
                   "[default: the torch hub cache; LPIPS is off when absent].")
@click.option("--no-random-start", is_flag=True, default=False, help="Start from the image itself.")
@click.option("--seed", default=None, help="Random seed [default: 0].")
@click.option("--config", "config", default="default", show_default=True,
              help="Protect config name (configs/protect/) or YAML path; options override it.")
@click.option("--json", "as_json", is_flag=True, help="One JSON report per image per line on stdout.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write all reports to this JSON file.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no notes (such as LPIPS being off).")
def command(images: Tuple[str, ...], batch_size: Optional[str], target: Optional[str], eps: Optional[str], steps: Optional[str],
            step_size: Optional[str], schedule: Optional[str], encoder: Optional[str], model_path: Optional[str],
            out: Optional[str], eot: Optional[str], lpips_weight: Optional[str], lpips_weights: Optional[str],
            no_random_start: bool, seed: Optional[str], config: str, as_json: bool, report: Optional[str],
            device: str, quiet: bool) -> None:
    """Protect images against misuse by image-to-video models like Stable Video Diffusion.

    \b
    Adds an L-inf bounded perturbation that moves the image's CLIP embedding and VAE
    latent: toward --target (directed) or away from the original (undirected). Writes
    <stem>.protected.png (lossless, same size, never over the input) and a quality
    report (L-inf, L2, PSNR, SSIM, LPIPS, cosines before/after per encoder).
    A folder stands for the images in it (natural order, not recursive; other files and
    earlier *.protected.png outputs are skipped, with a note). Images of one size are
    protected as one batch. Bad images are reported and skipped; the exit code is then 1.

    \b
    Examples:
      mmvgm protect photo.png --encoder svd --model-path ~/weights/svd
      mmvgm protect photo.png --target noise.png --eps 4/255 --steps 200 -m ~/weights/svd
      mmvgm protect imgs/*.png --out protected/ --eot jpeg,resize --report report.json
      mmvgm protect photos/ --out protected/ --batch-size 8 -m ~/weights/svd
    """
    from mmvgm.attacks.budget import parse_positive_int
    from mmvgm.attacks.files import expand_inputs, output_paths, refuse_input, resolve_options
    from mmvgm.cli import fail
    from mmvgm.io.atomic import write_json_atomic

    options = {"eps": eps, "steps": steps, "step_size": step_size, "schedule": schedule, "eot": eot,
               "lpips_weight": lpips_weight, "seed": seed, "random_start": False if no_random_start else None}
    found = expand_inputs(images)
    output_paths(found.images, out, target)  # refuse bad output paths and options before loading models
    if report:
        refuse_input(report, found.images + ([Path(target)] if target else []))
    cfg, _ = resolve_options(config, **options)
    batch = parse_positive_int(batch_size, "batch size") if batch_size is not None else None
    errors = _missing_inputs(found.images, target)  # reported before models load and before any note
    errors.update(_folder_errors(found, quiet))
    reports = []
    for rep in _all_reports(found.images, errors, cfg, encoder, model_path, lpips_weights, device, quiet,
                            target=target, out=out, config=config, batch_size=batch, **options):
        reports.append(rep)
        if "error" in rep and rep["path"] not in errors:
            click.echo(f"mmvgm: error: {rep['path']}: {' '.join(rep['error'].split())}", err=True)
        if as_json:
            click.echo(json.dumps(rep))
        elif "error" not in rep:
            _print_report(rep)
    if report:
        write_json_atomic(report, reports)
    failures = sum("error" in rep for rep in reports)
    if failures:
        fail(f"{failures} of {len(reports)} images failed", 1)


def _missing_inputs(images: List[Path], target: Optional[str]) -> Dict[str, str]:
    """``{path: reason}`` for the inputs that do not exist, each reported now as one error line;
    a missing ``--target`` fails the whole run (every image needs it)."""
    from mmvgm.errors import InputError
    from mmvgm.io.paths import existing_path

    if target is not None:
        existing_path(target)
    missing = {}
    for path in images:
        try:
            existing_path(path)
        except InputError as exc:
            missing[str(Path(path))] = exc.message  # as protect_files names its reports
            click.echo(f"mmvgm: error: {path}: {exc.message}", err=True)
    return missing


def _folder_errors(found, quiet: bool) -> Dict[str, str]:
    """A note per folder on what it skipped (not with ``quiet``), and ``{folder: reason}``
    for a folder without images, each reported now as one error line."""
    for folder, names in found.skipped.items():
        if not quiet:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            click.echo(f"note: {folder}: skipped {len(names)} that are not images to protect: {shown}", err=True)
    for folder, message in found.errors.items():
        click.echo(f"mmvgm: error: {folder}: {message}", err=True)
    return {str(folder): message for folder, message in found.errors.items()}


def _all_reports(images: List[Path], errors: Dict[str, str], cfg: dict, encoder: Optional[str],
                 model_path: Optional[str], lpips_weights: Optional[str], device: str, quiet: bool,
                 **kwargs) -> Iterator[dict]:
    """The errors found before any model loads, then a report per image as its batch finishes
    (models load only when some input exists)."""
    yield from ({"path": path, "error": message} for path, message in errors.items())
    present = [path for path in images if str(path) not in errors]
    if present:
        yield from _protect_present(present, cfg, encoder, model_path, lpips_weights, device, quiet, **kwargs)


def _protect_present(images: List[Path], cfg: dict, encoder: Optional[str], model_path: Optional[str],
                     lpips_weights: Optional[str], device: str, quiet: bool, **kwargs) -> Iterator[dict]:
    from mmvgm.attacks.files import load_protection, protect_files
    from mmvgm.progress import make_progress
    from mmvgm.runtime import pick_device

    enc, lpips_model, note = load_protection(cfg, encoder, model_path, lpips_weights, pick_device(device))
    if note and not quiet:
        click.echo(f"note: {note}", err=True)
    with make_progress(disable=quiet) as progress:
        done = progress.add_task("images", total=len(images))
        steps: List[int] = []  # the one task of the running batch's steps, made by its first batch

        def on_batch(paths: List[Path], total: int):
            name = f"protect {paths[0].name}" + (f" +{len(paths) - 1}" if len(paths) > 1 else "")
            if steps:
                progress.reset(steps[0], total=total, description=name)
            else:
                steps.append(progress.add_task(name, total=total))
            return lambda step, loss: progress.advance(steps[0])

        for rep in protect_files(images, enc, lpips=lpips_model, on_batch=on_batch, **kwargs):
            progress.advance(done)
            yield rep


def _print_report(rep: dict) -> None:
    lp = "off" if rep["lpips"] is None else f"{rep['lpips']:.4f}"
    psnr = "inf" if rep["psnr"] is None else f"{rep['psnr']:.2f}"
    ssim = "n/a" if rep["ssim"] is None else f"{rep['ssim']:.4f}"  # images under 3 px a side
    click.echo(f"{rep['path']} -> {rep['output']}  ({rep['mode']}, eps {rep['eps'] * 255:.3g}/255, "
               f"{rep['steps']} steps, {rep['seconds']:.1f}s)")
    click.echo(f"  L-inf {rep['linf'] * 255:.3g}/255  L2 {rep['l2']:.3f}  PSNR {psnr} dB  "
               f"SSIM {ssim}  LPIPS {lp}")
    ref = "target" if rep["mode"] == "directed" else "original"
    for name, c in rep["encoders"].items():
        click.echo(f"  {name}: cos to {ref} {c['cos_before']:.4f} -> {c['cos_after']:.4f}")
