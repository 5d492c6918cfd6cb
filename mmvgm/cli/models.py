"""``mmvgm models``: the backbone registry and the shipped backbone configs."""
from __future__ import annotations

import json
from typing import Optional

import click


@click.command("models", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", required=False)
@click.option("--params", is_flag=True, help="With NAME: build it (random weights) and count parameters.")
@click.option("--zoo", is_flag=True,
              help="The known public weights (configs/zoo.yaml): which the Hugging Face cache holds, "
                   "and the command that fetches each. Looks in the cache only, never online.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def command(name: Optional[str], params: bool, zoo: bool, as_json: bool) -> None:
    """List registered backbones and shipped configs, or show one resolved config.

    \b
    NAME is a shipped config (videomae_tiny), a registered backbone (xclip),
    timm:<timm model name> (timm:resnet50) or a YAML file.

    \b
    Examples:
      mmvgm models
      mmvgm models videomae
      mmvgm models timm:vit_base_patch16_224 --params
      mmvgm models --json
      mmvgm models --zoo
    """
    import yaml

    if zoo:
        if name is not None or params:
            raise click.UsageError("--zoo takes no NAME and no --params")
        _print_zoo(as_json)
        return

    from mmvgm.models.registry import (backbone_entries, describe_config, list_configs,
                                       resolve_backbone_config, summarize_backbone)

    if name is None:
        if params:
            raise click.UsageError("--params needs a NAME")
        backbones = [{"name": e.name, "default_config": e.default_config, "description": e.description}
                     for e in backbone_entries()]
        configs = [describe_config(c) for c in list_configs()]
        if as_json:
            click.echo(json.dumps({"backbones": backbones, "configs": configs}, indent=2))
            return
        click.echo("Backbones (build_model({'backbone': NAME, ...}); timm also as timm:<timm model>):")
        width = max(len(b["name"]) for b in backbones) + 2
        for b in backbones:
            click.echo(f"  {b['name']:<{width}}{b['description']}  [default config: {b['default_config']}]")
        click.echo("\nConfigs (configs/backbones/*.yaml):")
        width = max(len(c["config"]) for c in configs) + 2
        for c in configs:
            extra = f"  timm:{c['timm_model']}" if c.get("timm_model") else ""
            extra += f"  weights: {c['weights']}" if c.get("weights") else ""
            click.echo(f"  {c['config']:<{width}}{c['backbone']:<10}{c['frames']:>3} x {c['size']:>3}px"
                       f"  {c['channels']} ch{extra}")
        return
    cfg = resolve_backbone_config(name)
    if params:
        cfg = dict(cfg, **summarize_backbone(cfg))
    if as_json:
        click.echo(json.dumps(cfg, indent=2))
    else:
        click.echo(yaml.safe_dump(cfg, sort_keys=False).rstrip())


def _print_zoo(as_json: bool) -> None:
    from mmvgm.checkpoint.zoo import zoo_table

    rows, cached = zoo_table()
    if as_json:
        click.echo(json.dumps({"entries": rows, "cached": cached}, indent=2))
        return
    marks = {"cached": "cached ", "partial": "partial", "absent": "-      ", "url": "url    "}
    kind = None
    for row in rows:
        if row["kind"] != kind:
            kind = row["kind"]
            click.echo(f"{'' if kind == rows[0]['kind'] else chr(10)}{kind.capitalize()}:")
        where = row["id"] + (f"@{row['revision']}" if row["revision"] not in (None, "main") else "") \
            if row["id"] else "not on the hub"
        click.echo(f"  {marks[row['state']]}  {row['name']:<24}{where}  [{row['license']}]")
        if row["state"] == "partial":
            click.echo(f"             lacks {', '.join(row['lacking'])}")
        if row["state"] != "cached":
            click.echo(f"             fetch: {row['fetch']}")
        click.echo(f"             use:   {row['use']}")
        if row.get("note"):
            click.echo(f"             note:  {row['note']}")
    click.echo(f"\n{cached} of {len(rows)} in the Hugging Face cache. Nothing is fetched unless you name an id.")
