"""The ``mmvgm`` command: a click group whose verbs live one per module in this package.

Verbs are listed in ``VERBS`` (name -> module); each module defines ``command``. Adding a
verb is one new module plus one line here. Errors become one line on stderr and an exit
code; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import IO, Any, List, Optional

import click

from mmvgm.errors import MMVGMError

VERBS = {
    "info": "mmvgm.cli.info",
    "dataset": "mmvgm.cli.dataset",
    "train": "mmvgm.cli.train",
    "eval": "mmvgm.cli.eval",
    "fit-real": "mmvgm.cli.fit_real",
    "enrol": "mmvgm.cli.enrol",
    "models": "mmvgm.cli.models",
    "protect": "mmvgm.cli.protect",
    "protect-eval": "mmvgm.cli.protect_eval",
    "trace": "mmvgm.cli.trace",
    "scan": "mmvgm.cli.scan",
    "demo": "mmvgm.cli.demo",
    "lvd-eval": "mmvgm.cli.lvd_eval",
    "lvd-import": "mmvgm.cli.lvd_import",
    "lvd-record": "mmvgm.cli.lvd_record",
    "lvd-train": "mmvgm.cli.lvd_train",
    "serve": "mmvgm.cli.serve",
    "push": "mmvgm.cli.push",
}

INTERNAL_ERROR_EXIT = 70  # EX_SOFTWARE
CLOSED_PIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away


def register_verb(name: str, module: str) -> None:
    """Add a verb from another package (plugins); ``module`` must define ``command``."""
    VERBS[name] = module


class VerbGroup(click.Group):
    """Loads verb modules lazily and turns every exception into one line."""

    def list_commands(self, ctx: click.Context) -> list:
        return sorted(VERBS)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        module = VERBS.get(name)
        if module is None:
            return None
        return importlib.import_module(module).command

    def make_context(self, info_name: Optional[str], args: List[str], parent: Optional[click.Context] = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:  # e.g. `mmvgm --bogus`
            raise one_line_usage_error(exc) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a verb's bad option or argument, or an unknown verb
            raise one_line_usage_error(exc) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except MMVGMError as exc:
            if debug_enabled(ctx):
                raise
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:  # the reader left (`mmvgm models --zoo | head`): not an error to report
            _stdout_to_devnull()
            sys.exit(CLOSED_PIPE_EXIT)
        except Exception as exc:  # noqa: BLE001 - the last line of defence for users
            if debug_enabled(ctx):
                raise
            fail(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                 INTERNAL_ERROR_EXIT)


class OneLineUsageError(click.UsageError):
    """A usage error shown like every other error, one ``mmvgm: error:`` line (exit code 2),
    instead of click's usage, hint and error lines."""

    def show(self, file: Optional[IO[Any]] = None) -> None:
        where = self.ctx.command_path if self.ctx is not None else "mmvgm"
        echo_error(f"{self.format_message().rstrip('.')} (see {where} --help)")


def one_line_usage_error(exc: click.UsageError) -> click.UsageError:
    """``exc`` as a :class:`OneLineUsageError`; left as it is when its message is the help
    itself (a bare ``mmvgm``: click shows the help through a usage error)."""
    shows_help = exc.ctx is not None and exc.format_message() == exc.ctx.get_help()
    if isinstance(exc, OneLineUsageError) or shows_help:
        return exc
    return OneLineUsageError(exc.format_message(), exc.ctx)


def debug_enabled(ctx: click.Context) -> bool:
    """Whether ``mmvgm --debug`` was given (verbs then let exceptions through)."""
    return bool(ctx.find_root().params.get("debug"))


def echo_error(message: object) -> None:
    """``mmvgm: error: MESSAGE`` on stderr, always exactly one line; for a verb that reports a
    failed item (``f"{path}: {reason}"``, or an ``MMVGMError``) and goes on with the rest."""
    click.echo("mmvgm: error: " + " ".join(str(message).split()), err=True)


def echo_warning(message: object) -> None:
    """``mmvgm: warning: MESSAGE`` on stderr, one line (e.g. a checkpoint trained on synthetic media)."""
    click.echo("mmvgm: warning: " + " ".join(str(message).split()), err=True)


def fail(message: str, code: int = 1) -> None:
    echo_error(message)
    sys.exit(code)


@click.group(cls=VerbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="mmvgm", prog_name="mmvgm")
def cli(debug: bool) -> None:
    """mmvgm: forensics for video generative models.

    \b
    Detect AI-generated video, trace it to its source model, protect images
    against image-to-video misuse, and stop unsafe generation early (LVD).

    \b
    Examples:
      mmvgm demo
      mmvgm info clip.mp4
      mmvgm trace clip.mp4 --checkpoint ckpt/
      mmvgm protect img.png --eps 4/255 --target t.png --encoder svd --model-path ~/weights/svd
    """


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of output nobody reads
    raises nothing more (the way Python's documentation handles SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Optional[list] = None) -> None:
    try:
        cli.main(args=argv, prog_name="mmvgm")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    try:
        if sys.stdout is not None:
            sys.stdout.flush()  # output still buffered when its reader has already left
    except BrokenPipeError:
        _stdout_to_devnull()
        code = CLOSED_PIPE_EXIT
    sys.exit(code)
