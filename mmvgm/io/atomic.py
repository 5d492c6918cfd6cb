"""Atomic writes: write beside the destination, fsync, then rename over it."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator, Optional

from mmvgm.errors import InputError, PathLike


@contextlib.contextmanager
def atomic_path(dest: PathLike, protect: Optional[PathLike] = None) -> Iterator[Path]:
    """Yield a temporary path in ``dest``'s folder; on success it is renamed to ``dest``.

    ``protect``: a user input that must never be overwritten (refused if it is ``dest``).
    On error the temporary file is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    if protect is not None and _same_file(dest, Path(protect)):
        raise InputError("refusing to overwrite the input file; choose another output path", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp(dest)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text_atomic(dest: PathLike, text: str, protect: Optional[PathLike] = None) -> Path:
    with atomic_path(dest, protect=protect) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)


def write_json_atomic(dest: PathLike, obj: Any, protect: Optional[PathLike] = None) -> Path:
    return write_text_atomic(dest, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n",
                             protect=protect)


def _new_temp(dest: Path) -> Path:
    """An empty new file beside ``dest``, with the permissions any new file gets (0666 less the
    umask); ``tempfile.mkstemp`` would make it, hence ``dest``, readable by its owner only."""
    for _ in range(100):
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp{dest.suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {dest}")


def new_temp_dir(parent: Path, prefix: str) -> Path:
    """An empty new folder in ``parent`` with the permissions any new folder gets (0777 less the
    umask), to be renamed into place; ``tempfile.mkdtemp`` would make it owner-only."""
    for _ in range(100):
        tmp = Path(parent) / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary folder name in {parent}")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
