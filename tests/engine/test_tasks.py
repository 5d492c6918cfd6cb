import pytest

from mmvgm.data.labels import LabelSet
from mmvgm.engine.tasks import (map_label, prepare_samples, relabel, task_label_set, task_splits,
                                unused_message)
from mmvgm.errors import ConfigError, InputError
from mmvgm.io.discovery import Sample


def S(label, i=0):
    return Sample(f"/d/{label}/{i}.mp4", label)


def test_label_sets_per_task(tmp_path):
    assert task_label_set("detect").names == ["real", "fake"]
    assert task_label_set("trace").name == "vgmshield9" and len(task_label_set("trace")) == 9
    joint = task_label_set("joint")
    assert joint.names[0] == "real" and len(joint) == 10
    with pytest.raises(ConfigError, match="did you mean 'trace'"):
        task_label_set("trase")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nclasses: [real, lavie]\n")
    with pytest.raises(ConfigError, match="contains 'real'"):
        task_label_set("trace", bad)


def test_detect_maps_every_source_to_fake():
    assert map_label("detect", "real", ["real", "fake"]) == "real"
    assert map_label("detect", "lavie", ["real", "fake"]) == "fake"
    samples = [S("real"), S("lavie"), S("show-1")]
    used, unused = prepare_samples(samples, "detect", task_label_set("detect"))
    assert unused == {} and [s.label for s in relabel(used, "detect", task_label_set("detect"))] == \
        ["real", "fake", "fake"]


def test_trace_leaves_out_real_and_unknown_with_a_note():
    labels = LabelSet("two", ["lavie", "show-1"])
    samples = [S("real"), S("lavie"), S("show-1"), S("lavei")]
    used, unused = prepare_samples(samples, "trace", labels)
    assert [s.label for s in used] == ["lavie", "show-1"]
    assert unused == {"lavei": 1, "real": 1}
    assert "did you mean 'lavie'" in unused_message(unused, labels, "trace")


def test_empty_class_and_fake_only_are_errors():
    labels = LabelSet("two", ["lavie", "show-1"])
    with pytest.raises(InputError, match="show-1"):
        prepare_samples([S("lavie")], "trace", labels)
    with pytest.raises(InputError, match="only as 'fake'"):
        prepare_samples([S("real"), S("fake")], "joint", task_label_set("joint", None))
    with pytest.raises(InputError, match="real"):
        prepare_samples([S("lavie")], "detect", task_label_set("detect"))


def test_task_splits_are_stratified_per_source_and_repeatable(synth_data):
    labels = task_label_set("detect")
    a, info = task_splits(synth_data, "detect", labels, [0.5, 0.25, 0.25], 2024)
    b, info_b = task_splits(synth_data, "detect", labels, [0.5, 0.25, 0.25], 2024)
    assert a == b and info == info_b
    test_sources = {s.path.split("/")[-2] for s in a["test"]}
    assert test_sources == {"real", "lavie", "show-1", "hotshot-xl"}  # every source reaches test
    assert {s.label for s in a["test"]} == {"real", "fake"}
    c, info_c = task_splits(synth_data, "detect", labels, [0.5, 0.25, 0.25], 7)
    assert info_c["split_fingerprints"]["test"] != info["split_fingerprints"]["test"]
    assert info_c["fingerprint"] == info["fingerprint"]


def test_the_label_mapping_has_one_home_shared_with_the_dataset_report():
    import mmvgm.data.report
    import mmvgm.data.tasks
    import mmvgm.engine.tasks

    for name in ("map_label", "relabel", "task_label_set", "unused_message", "split_used", "check_task"):
        assert getattr(mmvgm.engine.tasks, name) is getattr(mmvgm.data.tasks, name)
    assert mmvgm.data.report.map_label is mmvgm.data.tasks.map_label
