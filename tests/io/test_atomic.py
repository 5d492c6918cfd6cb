import json
import os
import stat

import pytest

from mmvgm.errors import InputError
from mmvgm.io.atomic import atomic_path, write_json_atomic


def test_atomic_write_leaves_no_temp_files(tmp_path):
    dest = tmp_path / "sub" / "out.json"
    write_json_atomic(dest, {"a": 1})
    assert json.loads(dest.read_text()) == {"a": 1}
    assert [p.name for p in dest.parent.iterdir()] == ["out.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_refuses_to_overwrite_the_protected_input(tmp_path):
    src = tmp_path / "img.png"
    src.write_bytes(b"original")
    with pytest.raises(InputError, match="overwrite the input"):
        with atomic_path(tmp_path / "." / "img.png", protect=src):
            pass
    assert src.read_bytes() == b"original"


def test_new_files_get_the_usual_permissions(tmp_path):
    """Like any new file (0666 less the umask), not mkstemp's owner-only 0600."""
    old = os.umask(0o022)
    try:
        dest = write_json_atomic(tmp_path / "out.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


def test_new_temp_dirs_get_the_usual_permissions(tmp_path):
    """Renamed into place as checkpoint folders: 0777 less the umask, not mkdtemp's 0700."""
    from mmvgm.io.atomic import new_temp_dir

    old = os.umask(0o022)
    try:
        first, second = new_temp_dir(tmp_path, ".x-"), new_temp_dir(tmp_path, ".x-")
    finally:
        os.umask(old)
    assert first != second and first.name.startswith(".x-")
    assert stat.S_IMODE(first.stat().st_mode) == 0o755
