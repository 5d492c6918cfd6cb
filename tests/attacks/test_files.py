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


def _save(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def _read(path):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_a_folder_is_its_images_in_natural_order(tmp_path):
    from mmvgm.attacks.files import expand_inputs
    from tests.attacks.conftest import random_image

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("img10.png", "img2.jpg", "IMG1.PNG", "img2.protected.png", ".hidden.png"):
        _save(folder / name, random_image(8, 8))
    (folder / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    found = expand_inputs([tmp_path / "lone.png", folder, tmp_path / "empty"])
    assert found.images == [tmp_path / "lone.png", folder / "IMG1.PNG", folder / "img2.jpg", folder / "img10.png"]
    assert found.skipped == {folder: ["img2.protected.png", "notes.txt", "sub/"]}
    assert list(found.errors) == [tmp_path / "empty"] and "no images" in found.errors[tmp_path / "empty"]


def test_protect_a_folder_of_mixed_sizes_in_batches(tmp_path, svd_encoder, fast_config):
    """Same-size images share a batch; every image gets one report and a PNG within the budget,
    as protecting it alone gives it (up to the encoder's batched rounding: at most one level)."""
    import numpy as np

    from mmvgm.attacks.files import protect_files
    from tests.attacks.conftest import random_image

    folder = tmp_path / "in"
    folder.mkdir()
    shapes = {"a1.png": (24, 32), "a2.png": (16, 16), "a3.png": (24, 32), "a4.png": (24, 32), "a5.png": (16, 16)}
    originals = {n: _save(folder / n, random_image(*hw, seed=i)) for i, (n, hw) in enumerate(shapes.items())}
    (folder / "readme.txt").write_text("not an image")
    batches = []
    reports = list(protect_files([folder], svd_encoder, out=tmp_path / "out", config=fast_config, batch_size=2, steps=4,
                                 on_batch=lambda paths, steps: batches.append([p.name for p in paths])))
    assert batches == [["a1.png", "a3.png"], ["a4.png"], ["a2.png", "a5.png"]]
    assert sorted(r["path"] for r in reports) == sorted(str(p) for p in originals.values())
    batched = [originals["a3.png"], originals["a5.png"]]  # each the second of its batch
    alone = {r["path"]: r for r in protect_files(batched, svd_encoder, out=tmp_path / "alone", config=fast_config,
                                                 batch_size=1, steps=4)}
    for rep in reports:
        assert "error" not in rep
        saved, orig = _read(rep["output"]), _read(rep["path"])
        assert saved.shape == orig.shape and np.abs(saved.astype(int) - orig.astype(int)).max() <= 4
        if rep["path"] in alone:
            assert np.abs(saved.astype(int) - _read(alone[rep["path"]]["output"]).astype(int)).max() <= 1
    assert len(alone) == 2
    assert not list((tmp_path / "out").glob("readme*")) and not list((tmp_path / "out").glob(".*"))


def test_a_batch_that_runs_out_of_gpu_memory_is_halved():
    import torch

    from mmvgm.attacks.files import _protect_split

    sizes = []

    def run(images, callback=None):
        sizes.append(len(images))
        if len(images) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return images, [{"n": images[0]}]

    results = _protect_split([1, 2, 3], [Path(f"{i}.png") for i in range(3)], run, (None, None, 5))
    assert [r for _, r in results] == [{"n": 1}, {"n": 2}, {"n": 3}] and sizes == [3, 1, 2, 1, 1]


def test_default_batch_size():
    from mmvgm.attacks.files import default_batch_size

    assert default_batch_size("cpu") == 4 and default_batch_size("cuda:1") == 8
