import pytest

from tests.engine.synthetic import make_dataset, tiny_config, write_labels


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """real / lavie / show-1 (8 each) plus a hotshot-xl folder no label file knows (held out)."""
    root = tmp_path_factory.mktemp("synth") / "data"
    make_dataset(root, per_class=8)
    make_dataset(root, per_class=4, classes=("hotshot-xl",))
    return root


@pytest.fixture(scope="session")
def synth_labels(tmp_path_factory):
    return write_labels(tmp_path_factory.mktemp("labels") / "two.yaml")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synth_data, synth_labels):
    """One 2-epoch joint run shared by the tests that only read its checkpoints."""
    from mmvgm.engine.train import train

    out = tmp_path_factory.mktemp("run") / "run"
    result = train(tiny_config(synth_data, out, synth_labels))
    return result
