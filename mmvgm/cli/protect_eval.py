"""``mmvgm protect-eval``: how much of a protection survives JPEG, resizing and blurring."""
from __future__ import annotations

import json
from typing import Optional

import click


@click.command(name="protect-eval")
@click.argument("original", type=click.Path())
@click.argument("protected", type=click.Path())
@click.option("--target", "-t", type=click.Path(), default=None,
              help="The target of a directed protection (effects are measured toward it).")
@click.option("--purify", default="jpeg:75,jpeg:50,resize:0.5,blur:1", show_default=True,
              help="Purifications to try: jpeg:Q, resize:S (down and back up), blur:SIGMA.")
@click.option("--encoder", "-e", default=None,
              help="auto | svd | wan | cogvideox | ltx | i2vgen | clip | vae | timm:NAME "
                   "[default: guessed from --model-path, as auto for a pipeline folder; svd without one].")
@click.option("--model-path", "-m", type=click.Path(), default=None, envvar="MMVGM_PROTECT_MODEL",
              show_envvar=True, help="Weights: a folder, file or hub id (as for `mmvgm protect`).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Also write the JSON to this file.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
def command(original: str, protected: str, target: Optional[str], purify: str, encoder: Optional[str],
            model_path: Optional[str], as_json: bool, report: Optional[str], device: str) -> None:
    """Measure how much embedding shift survives each purification.

    \b
    For each purification p: cos(E(p(protected)), E(ref)) and cos(E(p(original)), E(ref)),
    with ref the target (directed) or the original (undirected); 'effect' is the shift the
    protection adds beyond what p alone does, 'survival' its fraction of the unpurified effect.

    \b
    Examples:
      mmvgm protect-eval photo.png photo.protected.png -m ~/weights/svd
      mmvgm protect-eval photo.png photo.protected.png --target t.png --purify jpeg:90,blur:2 --json
    """
    from mmvgm.attacks.encoders import build_encoder
    from mmvgm.attacks.files import refuse_input
    from mmvgm.attacks.purify import evaluate_protection, parse_purify
    from mmvgm.io.atomic import write_json_atomic
    from mmvgm.io.image import read_image
    from mmvgm.runtime import pick_device

    parse_purify(purify)  # refuse a bad spec before loading models
    if report:
        refuse_input(report, (original, protected) + ((target,) if target else ()))
    images = [read_image(p) for p in (original, protected)] + ([read_image(target)] if target else [])
    enc = build_encoder(encoder, model_path=model_path, device=pick_device(device))  # None: svd, or guessed
    result = {"original": original, "protected": protected, **({"target": target} if target else {}),
              **evaluate_protection(images[0], images[1], enc, target=images[2] if target else None,
                                    purify=purify)}
    if report:
        write_json_atomic(report, result)
    if as_json:
        click.echo(json.dumps(result))
        return
    ref = "target" if target else "original"
    click.echo(f"{'purification':<14}{'embedding':<12}{'cos(prot,' + ref + ')':>20}{'cos(orig,' + ref + ')':>20}"
               f"{'effect':>10}{'survival':>10}")
    for row in result["results"]:
        for name, r in row["encoders"].items():
            surv = "-" if r["survival"] is None else f"{r['survival']:.0%}"
            click.echo(f"{row['purification']:<14}{name:<12}{r['cos_protected']:>20.4f}{r['cos_original']:>20.4f}"
                       f"{r['effect']:>10.4f}{surv:>10}")
