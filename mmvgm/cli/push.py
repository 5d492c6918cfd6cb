"""``mmvgm push``: share a checkpoint as a Hugging Face hub repo with its model card."""
from __future__ import annotations

import json
from typing import Optional

import click


@click.command("push", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(file_okay=False))
@click.argument("repo_id")
@click.option("--metrics", type=click.Path(dir_okay=False),
              help="metrics.json of an `mmvgm eval` run, for the model card [default: CHECKPOINT/metrics.json].")
@click.option("--license", "license_", metavar="ID",
              help="Licence for the card's metadata (an HF licence id, e.g. cc-by-nc-4.0) [default: other].")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--revision", metavar="BRANCH", help="Upload to this branch (created if missing).")
@click.option("--message", "-m", help="Commit message.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(checkpoint: str, repo_id: str, metrics: Optional[str], license_: Optional[str], private: bool,
            revision: Optional[str], message: Optional[str], as_json: bool) -> None:
    """Upload CHECKPOINT to the hub repo REPO_ID (org/name), creating it if needed.

    The checkpoint is loaded first, so only one that loads back is shared. Uploaded:
    mmvgm.yaml, model.safetensors, a README.md model card (task, labels, backbone and
    its weights, training data fingerprints, eval figures, intended use, limits) and
    metrics.json when known; never the training state. Needs a token with write
    access (`hf auth login` or HF_TOKEN). mmvgm.yaml records the training config,
    data paths included: read it before pushing to a public repo.

    \b
    Examples:
      mmvgm push runs/trace/best my-org/mmvgm-videomae-trace9
      mmvgm push runs/det/best my-org/det --metrics runs/det/eval-best-test/metrics.json --license cc-by-nc-4.0
    Then anyone can run:
      mmvgm trace clip.mp4 --checkpoint my-org/mmvgm-videomae-trace9
    """
    from mmvgm.checkpoint.push import push_checkpoint

    result = push_checkpoint(checkpoint, repo_id, metrics=metrics, license=license_, private=private,
                             revision=revision, message=message)
    if as_json:
        click.echo(json.dumps({"repo_id": result.repo_id, "url": result.url, "files": result.files,
                               "commit": result.commit}))
    else:
        click.echo(f"pushed {', '.join(result.files)} to {result.url}")
