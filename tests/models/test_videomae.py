"""The VideoMAE backbone: transformers' VideoMAE modules with our own position table."""
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mmvgm.models import build_backbone, build_model
from mmvgm.models.registry import resolve_backbone_config

from .conftest import clip

WRITTEN_V1 = Path(__file__).parents[1] / "checkpoint" / "fixtures" / "written_v1"


def _tiny(**model):
    return build_backbone({"base": "videomae_tiny", "model": model} if model else "videomae_tiny")


@pytest.mark.parametrize("mean_pooling", [True, False], ids=["mean", "token0"])
def test_features_equal_transformers_videomae_model_with_the_same_weights(mean_pooling):
    from transformers import VideoMAEModel

    backbone = _tiny(use_mean_pooling=mean_pooling).eval()
    if backbone.fc_norm is not None:
        torch.nn.init.normal_(backbone.fc_norm.weight)  # not the identity, so pooling is checked too
    hf = VideoMAEModel(backbone.hf_config).eval()
    hf.load_state_dict(backbone.videomae.state_dict(), strict=True)
    x = clip()
    with torch.no_grad():
        tokens = hf(pixel_values=x).last_hidden_state
        expected = backbone.fc_norm(tokens.mean(1)) if mean_pooling else tokens[:, 0]
        ours = backbone(x)["features"]
    assert torch.equal(ours, expected)  # same modules, same ops, same order


def test_same_parameter_names_and_initialisation_as_transformers():
    from transformers import VideoMAEModel

    for mean_pooling in (True, False):
        torch.manual_seed(0)
        backbone = _tiny(use_mean_pooling=mean_pooling)
        torch.manual_seed(0)
        hf_state = VideoMAEModel(backbone.hf_config).state_dict()
        ours = backbone.videomae.state_dict()
        assert list(ours) == list(hf_state)
        assert all(torch.equal(ours[k], hf_state[k]) for k in ours)


def test_position_table_moves_with_the_model_and_stays_out_of_the_state_dict():
    backbone = _tiny()
    embeddings = backbone.videomae.embeddings
    assert "position_embeddings" in dict(embeddings.named_buffers())
    assert not any("position_embeddings" in k for k in backbone.state_dict())  # HF checkpoints lack it
    x = torch.randn(1, backbone.frames, 3, backbone.size, backbone.size)
    before = backbone(x)["features"]
    backbone.to(torch.float64)  # moved (and cast) with the module, as .cuda() moves it
    assert embeddings.position_embeddings.dtype == torch.float64
    assert torch.allclose(backbone(x.double())["features"].float(), before, atol=1e-4)
    backbone.to("meta")
    assert embeddings.position_embeddings.device.type == "meta"


def test_fast_position_table_is_bit_identical_to_transformers():
    from transformers.models.videomae import modeling_videomae as hf

    from mmvgm.models.videomae import sinusoid_table

    for n_position, d_hid in [(1, 2), (7, 5), (392, 768), (64, 96)]:
        ours, theirs = sinusoid_table(n_position, d_hid), hf.get_sinusoid_encoding_table(n_position, d_hid)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert torch.equal(ours, theirs), (n_position, d_hid)


def test_a_built_model_has_transformers_table_and_leaves_transformers_alone():
    from transformers.models.videomae import modeling_videomae as hf

    original = hf.get_sinusoid_encoding_table
    backbone = _tiny()
    assert hf.get_sinusoid_encoding_table is original
    table = backbone.videomae.embeddings.position_embeddings
    assert torch.equal(table, original(table.shape[1], table.shape[2]))


def test_a_checkpoint_written_by_the_videomae_model_wrapper_loads_strictly():
    meta = yaml.safe_load((WRITTEN_V1 / "mmvgm.yaml").read_text(encoding="utf-8"))
    model = build_model(meta["model_cfg"])
    state = load_file(WRITTEN_V1 / "model.safetensors")
    assert sorted(state) == sorted(model.state_dict())
    model.load_state_dict(state, strict=True)


def test_the_body_saves_as_an_hf_dir_that_videomae_model_loads(tmp_path):
    from transformers import VideoMAEModel

    backbone = _tiny().eval()
    backbone.videomae.save_pretrained(tmp_path)
    hf = VideoMAEModel.from_pretrained(tmp_path).eval()
    x = clip()
    with torch.no_grad():
        assert torch.equal(hf(pixel_values=x).last_hidden_state, backbone.videomae(x))


def test_the_backbone_pickles():
    backbone = _tiny().eval()
    copy = pickle.loads(pickle.dumps(backbone))
    x = clip(batch=1)
    with torch.no_grad():
        assert torch.equal(copy(x)["features"], backbone(x)["features"])


def test_videomae_base_builds_with_its_full_table():
    backbone = build_backbone(resolve_backbone_config("videomae"))
    assert backbone.videomae.embeddings.position_embeddings.shape == (1, 1568, 768)
