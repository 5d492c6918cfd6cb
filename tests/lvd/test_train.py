import pytest
import torch

from mmvgm.errors import CheckpointError, InputError
from mmvgm.lvd.model import load_lvd_model
from mmvgm.lvd.store import TrajectoryWriter, category_names
from mmvgm.lvd.train import fit_threshold, train_lvd

SHAPE = (3, 4, 4, 8, 8)  # steps, channels, frames, H, W


def make_store(root, n_normal=10, n_unsafe=10, seed=0):
    """Unsafe videos ("violent") carry a bright blob in latent channel 1 that sharpens over steps."""
    g = torch.Generator().manual_seed(seed)
    with TrajectoryWriter(root, category_names()) as w:
        for i in range(n_normal + n_unsafe):
            x = torch.randn(*SHAPE, generator=g)
            unsafe = i >= n_normal
            if unsafe:
                for s in range(SHAPE[0]):
                    x[s, 1, :, 2:6, 2:6] += 2.0 + s
            w.add(f"v{i:03d}", x, ["violent"] if unsafe else [])
    return root


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store"))


def test_conditioned_training_learns_and_saves_safetensors_yaml(store_dir, tmp_path):
    model, summary = train_lvd(store_dir, tmp_path / "m", mode="conditioned", categories=["violent", "political"],
                               epochs=4, batch_size=8, lr=2e-3, device="cpu", progress=False)
    assert summary["models"] == 1 and sorted(p.name for p in (tmp_path / "m").iterdir()) == ["lvd.yaml", "model.safetensors"]
    split = model.cfg["split"]
    assert set(split["test"]) & set(split["train"]) == set()
    normal_test = [v for v in split["test"] if int(v[1:]) < 10]
    assert normal_test, "normal videos are held out too"
    # thresholds come from validation, and the model separates the classes
    assert set(model.thresholds) == {"violent", "political"}
    assert summary["validation"]["violent"]["val_auc"] > 0.9
    from mmvgm.lvd.store import TrajectoryStore

    store = TrajectoryStore(store_dir)
    x = torch.stack([store.load(v, [2])[0] for v in split["test"]])
    flags = model.flags(x, 2).tolist()
    truth = [store.get(v).unsafe for v in split["test"]]
    assert sum(f == t for f, t in zip(flags, truth)) >= len(truth) - 1
    # reload from disk alone gives the same probabilities
    again = load_lvd_model(tmp_path / "m", device="cpu")
    assert torch.allclose(again.probs(x, 1), model.probs(x, 1))
    again.to_empty(device="meta")  # moves every tensor without calling .to(), as .cuda() does
    assert again.device == torch.device("meta")


def test_per_step_training_one_model_per_category_and_step(store_dir, tmp_path):
    model, summary = train_lvd(store_dir, tmp_path / "p", mode="per-step", steps="0-1",
                               categories=["violent", "distorted"], epochs=1, device="cpu", progress=False)
    files = sorted(p.name for p in (tmp_path / "p" / "per_step").iterdir())
    assert files == ["distorted_step00.safetensors", "distorted_step01.safetensors",
                     "violent_step00.safetensors", "violent_step01.safetensors"]
    assert set(model.thresholds["violent"]) == {"0", "1"}
    x = torch.zeros(2, *SHAPE[1:])
    assert model.probs(x, 1).shape == (2, 2)
    with pytest.raises(InputError, match="cover steps"):
        model.probs(x, 2)
    model.probs(x, 0)
    p1 = model.probs(x, 1)
    assert len(model.nets) == 4
    model.release(1)
    assert sorted(model.nets) == ["distorted_step00", "violent_step00"]
    assert torch.equal(model.probs(x, 1), p1)  # read again from disk
    from mmvgm.lvd.evaluate import flags_from_models
    from mmvgm.lvd.store import TrajectoryStore

    table = flags_from_models(tmp_path / "p", store_dir, split="all", device="cpu", batch_size=7, progress=False)
    store = TrajectoryStore(store_dir)
    assert sorted({**table["0"], **table["1"]}) == [v.id for v in store]
    for vid, flags in {**table["0"], **table["1"]}.items():
        assert flags == [int(model.flags(store.load(vid, [s]), s)[0]) for s in (0, 1)]
    for name, shape, message in (("short", (1, 4, 4, 8, 8), "records 1 step"),
                                 ("large", (3, 4, 4, 16, 16), "trained on")):
        with TrajectoryWriter(tmp_path / name, category_names()) as w:
            w.add("a", torch.zeros(shape), ["violent"])
        with pytest.raises(InputError, match=message):
            flags_from_models(tmp_path / "p", tmp_path / name, split="all", device="cpu", progress=False)


def test_train_bad_inputs(store_dir, tmp_path):
    with pytest.raises(InputError, match="outside the recorded steps"):
        train_lvd(store_dir, tmp_path / "x", steps="0-7", progress=False)
    with pytest.raises(InputError, match="unknown categories"):
        train_lvd(store_dir, tmp_path / "x", categories=["gore"], progress=False)
    with pytest.raises(InputError, match="--mode"):
        train_lvd(store_dir, tmp_path / "x", mode="joint", progress=False)
    with pytest.raises(InputError, match="steps-per-video"):
        train_lvd(store_dir, tmp_path / "x", steps_per_video=0, progress=False)
    assert not (tmp_path / "x").exists()
    from mmvgm.lvd.train import train_from_config

    for override, message in (({"epochs": 2.5}, "epochs must be an integer"),
                              ({"steps_per_video": "some"}, r"steps_per_video \(a number of steps, or all\) must be an integer"),
                              ({"lr": "fast"}, "lr 'fast' is not a number")):
        with pytest.raises(InputError, match=message):
            train_from_config(store_dir, tmp_path / "x", overrides=override, progress=False)
    with pytest.raises(InputError, match="needs --vae"):
        train_lvd(store_dir, tmp_path / "x", input_kind="rgb", progress=False)
    with pytest.raises(CheckpointError, match="no lvd.yaml"):
        load_lvd_model(tmp_path)


def test_fit_threshold_on_validation_only():
    thr, auc = fit_threshold([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9])
    assert 0.3 < thr <= 0.6 and auc == 1.0
    assert fit_threshold([1, 1], [0.2, 0.4]) == (0.5, None)


def test_rgb_input_decodes_with_a_local_vae(store_dir, tmp_path, tiny_pipeline_dir):
    model, summary = train_lvd(store_dir, tmp_path / "rgb", input_kind="rgb", vae=tiny_pipeline_dir,
                               categories=["violent"], steps="0", epochs=1, device="cpu", progress=False)
    assert model.cfg["backbone"]["channels"] == 3 and model.cfg["input"] == "rgb"
    frames = model.adapter(torch.randn(2, *SHAPE[1:]))
    size = model.cfg["backbone"]["size"]
    assert frames.shape == (2, SHAPE[2], 3, size, size) and frames.dtype == torch.float32
    assert model.probs(torch.randn(1, *SHAPE[1:]), 0).shape == (1, 1)
    with pytest.raises(CheckpointError, match="AutoencoderKL"):
        train_lvd(store_dir, tmp_path / "x", input_kind="rgb", vae=tmp_path, progress=False)


def test_steps_per_video_sampler_covers_each_video_once_per_draw(store_dir):
    from mmvgm.lvd.data import StepDataset, StepsPerVideoSampler
    from mmvgm.lvd.store import TrajectoryStore

    store = TrajectoryStore(store_dir)
    ids = [v.id for v in store][:5]
    ds = StepDataset(store, ids, [0, 1, 2], ["violent"])
    picks = list(StepsPerVideoSampler(ds, 2, seed=0))
    assert len(picks) == 10
    videos = [ds.items[i][0] for i in picks]
    assert sorted(set(videos)) == ids and all(videos.count(v) == 2 for v in ids)
    assert all(len({ds.items[i][1] for i in picks if ds.items[i][0] == v}) == 2 for v in ids)


def test_split_videos_stratified_disjoint_and_bad_ratios(store_dir):
    from mmvgm.lvd.data import split_videos
    from mmvgm.lvd.store import TrajectoryStore

    store = TrajectoryStore(store_dir)
    split = split_videos(store, (0.6, 0.2, 0.2), seed=3)
    assert sorted(sum(split.values(), [])) == sorted(v.id for v in store)
    for name, ids in split.items():
        assert ids == sorted(ids)
        unsafe = sum(store.get(v).unsafe for v in ids)
        assert unsafe and len(ids) - unsafe, f"{name} holds both normal and unsafe videos"
    assert split_videos(store, (0.6, 0.2, 0.2), seed=3) == split
    for bad in (0.7, "abc", (0.5, 0.5), (0.8, 0.3, -0.1), (0.5, 0.2, 0.2)):
        with pytest.raises(InputError, match="split ratios"):
            split_videos(store, bad)


def test_retraining_into_a_bundle_counts_only_its_own_weights(store_dir, tmp_path):
    out = tmp_path / "p"
    train_lvd(store_dir, out, mode="per-step", steps="0-1", categories=["violent"], epochs=1,
              device="cpu", progress=False)
    model, summary = train_lvd(store_dir, out, mode="per-step", steps="0", categories=["violent"], epochs=1,
                               device="cpu", progress=False)
    assert sorted(model.cfg["files"]) == ["violent_step00"]
    assert summary["bytes"] == (out / "per_step" / "violent_step00.safetensors").stat().st_size
    assert (out / "per_step" / "violent_step01.safetensors").exists()  # stale, and not counted


def test_interrupted_retraining_keeps_the_previous_bundle(store_dir, tmp_path, monkeypatch):
    import mmvgm.lvd.train as lvd_train

    out = tmp_path / "p"
    before, _ = train_lvd(store_dir, out, mode="per-step", steps="0-1", categories=["violent"], epochs=1,
                          device="cpu", progress=False)
    x = torch.randn(2, *SHAPE[1:])
    expected = [before.probs(x, s) for s in (0, 1)]
    calls = []
    real = lvd_train.fit_threshold

    def fail_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(lvd_train, "fit_threshold", fail_second)
    with pytest.raises(KeyboardInterrupt):
        train_lvd(store_dir, out, mode="per-step", steps="0-1", categories=["violent"], epochs=1,
                  seed=7, device="cpu", progress=False)
    # the network already trained for step 0 was staged, not written over the previous bundle's
    again = load_lvd_model(out, device="cpu")
    assert all(torch.equal(again.probs(x, s), p) for s, p in zip((0, 1), expected))
    assert sorted(p.name for p in out.iterdir()) == ["lvd.yaml", "per_step"]


def test_steps_per_video_default_all_and_per_step(store_dir, tmp_path):
    from mmvgm.lvd.train import train_from_config

    common = dict(overrides={"epochs": 1, "categories": ["violent"]}, progress=False, device="cpu")
    model, _ = train_from_config(store_dir, tmp_path / "d", **common)
    assert model.cfg["training"]["steps_per_video"] == 4  # configs/lvd/default.yaml
    model, _ = train_from_config(store_dir, tmp_path / "a", overrides={**common["overrides"], "steps_per_video": "all"},
                                 progress=False, device="cpu")
    assert model.cfg["training"]["steps_per_video"] is None
    model, _ = train_from_config(store_dir, tmp_path / "p", overrides={**common["overrides"], "mode": "per-step",
                                                                       "steps": "0"}, progress=False, device="cpu")
    assert model.cfg["training"]["steps_per_video"] is None  # the config's default does not apply
    with pytest.raises(InputError, match="conditioned only"):
        train_from_config(store_dir, tmp_path / "x", overrides={"mode": "per-step", "steps_per_video": 2},
                          progress=False)
