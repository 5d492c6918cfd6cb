from __future__ import annotations

import pytest

from mmvgm.data.labels import LabelSet, require_all_classes
from mmvgm.errors import ConfigError, InputError
from mmvgm.io.discovery import Sample


def test_shipped_label_sets_load_in_order():
    vgm = LabelSet.load("vgmshield9")
    assert len(vgm) == 9 and vgm.task == "trace"
    assert vgm.names[0] == "hotshot-xl" and vgm.names[-1] == "videocrafter-t2v"
    assert vgm.index("lavie") == 3
    assert vgm.display_name("svd-xt") == "Stable Video Diffusion XT"
    detect = LabelSet.load("detect")
    assert detect.names == ["real", "fake"] and detect.index("fake") == 1
    uvd = LabelSet.load("uvd5")
    assert uvd.negative == "normal" and uvd.is_known("normal") and "normal" not in uvd


def test_load_from_path_and_round_trip(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ntask: trace\nclasses:\n  - a\n  - {name: b, display: Bee}\n")
    labels = LabelSet.load(path)
    assert labels.names == ["a", "b"] and labels.display == ["a", "Bee"]
    assert LabelSet.from_dict(labels.to_dict()) == labels


def test_unknown_label_lists_known_ones_and_suggests():
    with pytest.raises(InputError) as err:
        LabelSet.load("vgmshield9").index("lavi")
    message = str(err.value)
    assert "did you mean 'lavie'" in message and "hotshot-xl" in message and "videocrafter-t2v" in message


@pytest.mark.parametrize("text, fragment", [
    ("classes: [a, a]\n", "more than once"),
    ("classes: []\n", "no classes"),
    ("clases: [a]\n", "did you mean 'classes'"),
    ("task: regress\nclasses: [a]\n", "task must be"),
])
def test_bad_label_files_are_refused(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        LabelSet.load(path)


def test_unknown_label_set_name():
    with pytest.raises(ConfigError, match="vgmshield9"):
        LabelSet.load("vgmshield")


def test_from_names_puts_real_first():
    assert LabelSet.from_names(["fake", "real"]).names == ["real", "fake"]
    assert LabelSet.from_names(["b", "a", "b"]).names == ["a", "b"]


def test_require_all_classes():
    labels = LabelSet.load("detect")
    counts = require_all_classes([Sample("a", "real"), Sample("b", "fake"), Sample("c", "fake")], labels)
    assert counts == {"real": 1, "fake": 2}
    with pytest.raises(InputError, match="no samples for class fake in train"):
        require_all_classes([Sample("a", "real")], labels, where="train")
    with pytest.raises(InputError, match="unknown label 'lavie'"):
        require_all_classes([Sample("a", "real"), Sample("b", "fake"), Sample("c", "lavie")], labels)
