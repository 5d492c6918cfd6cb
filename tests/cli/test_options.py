"""Options shared by several verbs."""
from mmvgm.cli.options import PRECISION_CHOICES


def test_precision_choices_are_the_runtime_precisions():
    from mmvgm.runtime import PRECISIONS

    assert PRECISION_CHOICES == PRECISIONS


def test_auto_precision_follows_the_checkpoint_on_cuda_and_is_fp32_on_cpu(monkeypatch):
    import torch

    from mmvgm.runtime import precision_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert precision_dtype("auto", cpu, "bf16") is None and precision_dtype("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision_dtype("auto", cuda, "fp32") is None
    assert precision_dtype("auto", cuda, "fp16") is torch.float16
    assert precision_dtype("auto", cuda, None) is torch.bfloat16 and precision_dtype("auto", cuda, "bf16") is torch.bfloat16


def test_protect_eval_default_purify_is_the_librarys():
    from mmvgm.attacks.purify import DEFAULT_PURIFY
    from mmvgm.cli.protect_eval import DEFAULT_PURIFY as spelled_out

    assert spelled_out == DEFAULT_PURIFY


def test_help_imports_no_torch():
    """`mmvgm --help` loads every verb's module for its one-line help: none may import torch."""
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from mmvgm.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
