"""mmvgm: forensics for video generative models."""
from __future__ import annotations

__version__ = "0.1.0"

from mmvgm.errors import (CheckpointError, ConfigError, DecodeError, DependencyError, InputError,
                          LimitError, MMVGMError)

__all__ = ["__version__", "MMVGMError", "InputError", "DecodeError", "LimitError", "ConfigError",
           "CheckpointError", "DependencyError", "Predictor"]


def __getattr__(name: str):
    # Lazy: ``import mmvgm`` stays light; torch loads only when Predictor is used.
    if name == "Predictor":
        from mmvgm.predict.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'mmvgm' has no attribute {name!r}")
