"""A verb for tests/cli/test_errors.py: raises the exception it is asked for."""
import click

from mmvgm.errors import CheckpointError, DecodeError, LimitError


@click.command("boom")
@click.argument("kind")
def command(kind: str) -> None:
    """Raise KIND (test helper)."""
    if kind == "decode":
        raise DecodeError("no decodable video frames", "clips/bad.mp4")
    if kind == "limit":
        raise LimitError("frame size 20000x20000 exceeds the pixel budget", "big.mp4")
    if kind == "checkpoint":
        raise CheckpointError("missing model.safetensors\n(expected files: mmvgm.yaml, model.safetensors)",
                              "ckpt/")
    if kind == "nopath":
        raise DecodeError("something went wrong")
    if kind == "runtime":
        raise RuntimeError("boom\nsecond line")
    if kind == "interrupt":
        raise KeyboardInterrupt
    click.echo("ok")
