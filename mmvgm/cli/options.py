"""Options shared by several verbs, defined once so that they read and behave the same."""
from __future__ import annotations

import click

#: ``mmvgm.runtime.device.PRECISIONS``, spelled out so that ``--help`` needs no torch import
#: (a test keeps the two equal).
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")

precision_option = click.option(
    "--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True,
    help="Numerics of scoring: auto is bf16 on a CUDA GPU that supports it, else fp32. "
         "eval, trace and scan share it, so eval measures what the others give.")


def run_options(command):
    """``--batch-size``, ``--workers``, ``--device`` and ``--threads``, as the verbs that score a
    folder through a model (fit-real, enrol) take them."""
    for option in reversed((
            click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True),
            click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
                         help="Decoding workers."),
            click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N"),
            click.option("--threads", type=click.IntRange(min=1), default=None,
                         help="Torch compute threads (also $MMVGM_THREADS)."))):
        command = option(command)
    return command
