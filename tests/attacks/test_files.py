from pathlib import Path

import pytest

from mmvgm.attacks.files import output_paths
from mmvgm.errors import InputError


def test_beside_the_input_by_default(tmp_path):
    assert output_paths([tmp_path / "a.png", tmp_path / "b.jpg"]) == \
        [tmp_path / "a.protected.png", tmp_path / "b.protected.png"]


def test_out_directory_or_single_png(tmp_path):
    assert output_paths(["x/a.png"], tmp_path / "new") == [tmp_path / "new" / "a.protected.png"]
    assert output_paths(["x/a.png"], tmp_path / "p.png") == [tmp_path / "p.png"]
    with pytest.raises(InputError, match="several inputs"):
        output_paths(["a.png", "b.png"], tmp_path / "p.png")
    with pytest.raises(InputError, match="lossless PNG"):
        output_paths(["a.png"], tmp_path / "p.jpg")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        output_paths(["a.png"], tmp_path / "file")


def test_never_the_input_and_no_collisions(tmp_path):
    src = tmp_path / "a.png"
    src.write_bytes(b"")
    with pytest.raises(InputError, match="overwrite the input"):
        output_paths([src], src)
    with pytest.raises(InputError, match="both be written"):
        output_paths([tmp_path / "d1" / "a.png", tmp_path / "d2" / "a.png"], tmp_path / "out")
    assert len(output_paths([Path("a.png"), Path("a.png")])) == 2  # the same input twice is harmless


def test_never_another_input(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "a.protected.png"
    a.write_bytes(b"")
    b.write_bytes(b"")
    with pytest.raises(InputError, match="overwrite the input"):
        output_paths([a, b])  # a's output is the second input
    with pytest.raises(InputError, match="overwrite the input"):
        output_paths([b, a])
    with pytest.raises(InputError, match="overwrite the input"):
        output_paths([a], target=b)  # the target of a directed protection is an input too
    with pytest.raises(InputError, match="overwrite the input"):
        output_paths([a], tmp_path / "t.png", target=tmp_path / "t.png")
