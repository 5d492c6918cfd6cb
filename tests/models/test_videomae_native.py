"""The plain-torch VideoMAE encoder that checkpoints are scored with: transformers' outputs, bit for bit."""
import subprocess
import sys

import pytest
import torch

from mmvgm.checkpoint.files import load_checkpoint, read_meta
from mmvgm.errors import CheckpointError, ConfigError
from mmvgm.models import build_backbone, build_model
from mmvgm.models.videomae_native import ACTIVATIONS, VIDEOMAE_DEFAULTS, NativeVideoMAEBody

from tests.inference_helpers import make_checkpoint

from .conftest import clip

CASES = {
    "tiny": {},
    "token0": {"use_mean_pooling": False},
    "no-qv-bias-tanh": {"qv_bias": False, "hidden_act": "gelu_pytorch_tanh", "num_attention_heads": 4},
    "tubelet1-eps": {"tubelet_size": 1, "layer_norm_eps": 1e-6, "num_hidden_layers": 2, "hidden_act": "relu"},
}


def _pair(model: dict, channels: int = 3):
    spec = {"base": "videomae_tiny", "model": model, "channels": channels}
    trained = build_backbone(spec).eval()
    if trained.fc_norm is not None:
        torch.nn.init.normal_(trained.fc_norm.weight)  # not the identity, so pooling is compared too
    scoring = build_backbone(spec, scoring=True)
    scoring.load_state_dict(trained.state_dict(), strict=True)
    return trained, scoring.eval()


@pytest.mark.parametrize("channels", [3, 4], ids=["rgb", "latents"])
@pytest.mark.parametrize("model", CASES.values(), ids=CASES)
def test_scoring_backbone_gives_transformers_features_bit_for_bit(model, channels):
    trained, scoring = _pair(model, channels)
    assert scoring.hf_config is None and isinstance(scoring.videomae, NativeVideoMAEBody)
    x = clip(batch=3, channels=channels)
    with torch.no_grad():
        assert torch.equal(scoring(x)["features"], trained(x)["features"])


def test_scoring_backbone_has_the_same_state_dict_keys_and_position_table():
    trained, scoring = _pair({}, channels=4)
    assert list(scoring.state_dict()) == list(trained.state_dict())
    assert torch.equal(scoring.videomae.embeddings.position_embeddings,
                       trained.videomae.embeddings.position_embeddings)


def test_gradients_match_too():
    """eval --attack and --explain differentiate through the scoring model."""
    trained, scoring = _pair({})
    x = clip(batch=2)
    grads = []
    for model in (trained, scoring):
        xi = x.clone().requires_grad_(True)
        model(xi)["features"].square().sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-6)


def test_an_activation_it_lacks_falls_back_to_transformers():
    assert "gelu_new" not in ACTIVATIONS
    backbone = build_backbone({"base": "videomae_tiny", "model": {"hidden_act": "gelu_new"}}, scoring=True)
    assert backbone.hf_config is not None


def test_defaults_are_transformers_videomae_config_fields():
    from transformers import VideoMAEConfig

    from mmvgm.models.videomae import hf_model_keys

    reference = VideoMAEConfig().to_dict()
    assert list(VIDEOMAE_DEFAULTS) == hf_model_keys(VideoMAEConfig)
    assert VIDEOMAE_DEFAULTS == {k: reference[k] for k in VIDEOMAE_DEFAULTS}


def _saved(directory, task="joint"):
    """A tiny checkpoint, and the model it was saved from (built by transformers' modules)."""
    from safetensors.torch import load_file

    make_checkpoint(directory, task=task)
    model = build_model(read_meta(directory).model_cfg).eval()
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    return model


@pytest.mark.parametrize("task", ["joint", "detect"])
def test_a_checkpoint_loads_on_the_native_encoder_and_scores_as_trained(tmp_path, task):
    model = _saved(tmp_path, task)
    loaded, _ = load_checkpoint(tmp_path)
    assert isinstance(loaded.backbone.videomae, NativeVideoMAEBody)
    x = clip(batch=2)
    with torch.no_grad():
        ours, theirs = loaded(x), model(x)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


def test_a_checkpoint_missing_a_tensor_is_refused_not_scored_with_garbage(tmp_path):
    from safetensors.torch import load_file, save_file

    make_checkpoint(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["backbone.videomae.encoder.layer.0.attention.attention.key.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing backbone.videomae.encoder.layer.0.attention"):
        load_checkpoint(tmp_path)


def test_scoring_a_videomae_checkpoint_imports_no_transformers(tmp_path):
    make_checkpoint(tmp_path)
    code = ("import sys, torch; from mmvgm.checkpoint.files import load_checkpoint; "
            f"m, _ = load_checkpoint({str(tmp_path)!r}); m(torch.zeros(1, 8, 3, 32, 32)); "
            "print(sorted(k for k in ('transformers', 'torchvision', 'scipy') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_heads_that_do_not_divide_the_width_are_one_config_error():
    with pytest.raises(ConfigError, match="not a multiple of num_attention_heads 3"):
        NativeVideoMAEBody({**VIDEOMAE_DEFAULTS, "hidden_size": 32, "num_attention_heads": 3}, 8, 32, 3)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_each_activation_is_transformers_own(name):
    from transformers.activations import ACT2FN

    x = torch.randn(4096) * 4
    assert torch.equal(ACTIVATIONS[name](x), ACT2FN[name](x))
