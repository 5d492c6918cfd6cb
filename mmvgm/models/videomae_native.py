"""VideoMAE's unmasked encoder in plain torch, for scoring checkpoints.

Importing transformers' modeling code costs more than importing torch itself (it loads
torch.distributed.tensor, torch._dynamo, scipy.optimize...), which dominated the start-up of
``mmvgm trace one.mp4``. A checkpoint only needs VideoMAE's forward, so ``load_checkpoint``
builds this module instead: the same submodule names as ``VideoMAEBody`` (so the same state
dict), the same torch calls in the same order (so the same outputs: the tests compare them bit
for bit with transformers' modules), and no random initialisation, since the checkpoint fills
every parameter. It has no dropout (a scoring model runs in eval mode); training keeps
transformers' modules, their initialisation, dropout and gradient checkpointing.

``VIDEOMAE_DEFAULTS`` is ``VideoMAEConfig``'s architecture fields and defaults; a test checks it
against the installed transformers, so a new field there fails CI instead of being ignored here.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmvgm.errors import ConfigError

VIDEOMAE_DEFAULTS: Dict[str, Any] = {
    "patch_size": 16, "tubelet_size": 2, "hidden_size": 768, "num_hidden_layers": 12,
    "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
    "layer_norm_eps": 1e-12, "qv_bias": True, "use_mean_pooling": True,
    "decoder_num_attention_heads": 6, "decoder_hidden_size": 384, "decoder_num_hidden_layers": 4,
    "decoder_intermediate_size": 1536, "norm_pix_loss": True,
}

#: transformers' ``ACT2FN`` entries whose function is exactly one torch call.
ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu, "relu": F.relu, "silu": F.silu, "swish": F.silu,
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
}


def videomae_arch(model: Mapping[str, Any]) -> Dict[str, Any]:
    """A backbone config's ``model:`` section completed with ``VideoMAEConfig``'s defaults."""
    return {**VIDEOMAE_DEFAULTS, **dict(model)}


def native_supported(arch: Mapping[str, Any]) -> bool:
    """Whether this module computes what transformers' modules compute for ``arch``."""
    return isinstance(arch["hidden_act"], str) and arch["hidden_act"] in ACTIVATIONS


class _Dense(nn.Module):
    """A ``.dense`` Linear in its own module, where transformers nests one (same state-dict keys)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, qv_bias: bool) -> None:
        super().__init__()
        self.head_size = hidden // heads
        self.query = nn.Linear(hidden, hidden, bias=qv_bias)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.value = nn.Linear(hidden, hidden, bias=qv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (*x.shape[:-1], -1, self.head_size)
        k = self.key(x).view(shape).transpose(1, 2)
        v = self.value(x).view(shape).transpose(1, 2)
        q = self.query(x).view(shape).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0,
                                             scale=self.head_size ** -0.5, is_causal=False)
        return out.transpose(1, 2).contiguous().reshape(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, qv_bias: bool) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, heads, qv_bias)
        self.output = _Dense(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output.dense(self.attention(x))


class Layer(nn.Module):
    """Pre-norm transformer block (transformers' ``VideoMAELayer``)."""

    def __init__(self, arch: Mapping[str, Any]) -> None:
        super().__init__()
        hidden, eps = arch["hidden_size"], arch["layer_norm_eps"]
        self.attention = Attention(hidden, arch["num_attention_heads"], arch["qv_bias"])
        self.intermediate = _Dense(hidden, arch["intermediate_size"])
        self.output = _Dense(arch["intermediate_size"], hidden)
        self.layernorm_before = nn.LayerNorm(hidden, eps=eps)
        self.layernorm_after = nn.LayerNorm(hidden, eps=eps)
        self.act = ACTIVATIONS[arch["hidden_act"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(self.layernorm_before(x)) + x
        return self.output.dense(self.act(self.intermediate.dense(self.layernorm_after(x)))) + x


class Encoder(nn.Module):
    def __init__(self, arch: Mapping[str, Any]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(arch) for _ in range(arch["num_hidden_layers"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


class PatchEmbeddings(nn.Module):
    def __init__(self, channels: int, hidden: int, patch: int, tubelet: int) -> None:
        super().__init__()
        self.projection = nn.Conv3d(channels, hidden, kernel_size=(tubelet, patch, patch),
                                    stride=(tubelet, patch, patch))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values.permute(0, 2, 1, 3, 4)).flatten(2).transpose(1, 2)


class Embeddings(nn.Module):
    def __init__(self, arch: Mapping[str, Any], frames: int, size: int, channels: int) -> None:
        super().__init__()
        patch, tubelet = arch["patch_size"], arch["tubelet_size"]
        self.patch_embeddings = PatchEmbeddings(channels, arch["hidden_size"], patch, tubelet)
        self.num_patches = (size // patch) ** 2 * (frames // tubelet)
        # The fixed sin-cos table: a non-persistent buffer (checkpoints lack it), as in
        # ``VideoMAEPositionalEmbeddings``; the body registers it, outside the meta device.
        self.position_embeddings: torch.Tensor

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embeddings = self.patch_embeddings(pixel_values)
        return embeddings + self.position_embeddings.type_as(embeddings)


class NativeVideoMAEBody(nn.Module):
    """(B, T, C, H, W) -> last hidden state (B, tokens, hidden), as ``VideoMAEBody``.

    Built with uninitialised parameters: call :meth:`load_state_dict` (strict) before use."""

    def __init__(self, arch: Mapping[str, Any], frames: int, size: int, channels: int) -> None:
        super().__init__()
        from mmvgm.models.videomae import sinusoid_table

        if arch["hidden_size"] % arch["num_attention_heads"]:
            raise ConfigError(f"videomae: hidden_size {arch['hidden_size']} is not a multiple of "
                              f"num_attention_heads {arch['num_attention_heads']}")
        with torch.device("meta"):  # no random initialisation: the checkpoint fills every tensor
            self.embeddings = Embeddings(arch, frames, size, channels)
            self.encoder = Encoder(arch)
            self.layernorm: Optional[nn.LayerNorm] = (
                None if arch["use_mean_pooling"] else nn.LayerNorm(arch["hidden_size"], eps=arch["layer_norm_eps"]))
        _uninitialised_on_cpu(self)
        self.embeddings.register_buffer(
            "position_embeddings", sinusoid_table(self.embeddings.num_patches, arch["hidden_size"]), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(self.embeddings(pixel_values))
        return self.layernorm(tokens) if self.layernorm is not None else tokens


def _uninitialised_on_cpu(module: nn.Module) -> None:
    """Give every meta-device parameter CPU memory, left as it is. (``Module.to_empty`` does the
    same through ``empty_like`` on meta tensors, which imports torch's symbolic-shape machinery
    and sympy.)"""
    for sub in module.modules():
        for name, p in list(sub.named_parameters(recurse=False)):
            setattr(sub, name, nn.Parameter(torch.empty(p.shape, dtype=p.dtype), requires_grad=p.requires_grad))
