import json
import subprocess
import sys

import yaml
from click.testing import CliRunner

from mmvgm.cli import cli


def test_lists_registry_and_configs():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    for name in ("i3d_r50", "videomae", "xclip", "timm", "videomae_tiny", "xclip_large_p14", "i3d_r50_tiny"):
        assert name in result.output
    assert "default config: xclip_base_p32" in result.output


def test_json_listing():
    result = CliRunner().invoke(cli, ["models", "--json"])
    data = json.loads(result.output)
    assert {b["name"] for b in data["backbones"]} >= {"i3d_r50", "videomae", "xclip", "timm"}
    tiny = next(c for c in data["configs"] if c["config"] == "xclip_tiny")
    assert (tiny["backbone"], tiny["frames"], tiny["size"], tiny["channels"]) == ("xclip", 8, 32, 3)


def test_one_config_resolved_with_params():
    result = CliRunner().invoke(cli, ["models", "videomae_tiny", "--params"])
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load(result.output)
    assert cfg["backbone"] == "videomae" and cfg["num_features"] == 32 and cfg["parameters"] > 0


def test_unknown_name_is_one_line():
    result = CliRunner().invoke(cli, ["models", "videomae_tyni"])
    assert result.exit_code != 0
    assert "did you mean 'videomae_tiny'" in result.output and "Traceback" not in result.output


def test_help_has_an_example_and_module_runs():
    out = subprocess.run([sys.executable, "-m", "mmvgm", "models", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "mmvgm models timm:" in out.stdout
