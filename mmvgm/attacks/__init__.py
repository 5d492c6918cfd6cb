"""Misuse prevention: protect images against image-to-video models, and attack detectors.

``protect(image, encoder, eps=4/255, steps=..., target=None, ...) -> (protected, report)``;
encoders via ``build_encoder`` / ``register_encoder``; the attack is ``EmbeddingPGD``.
Detector robustness (torchattacks, optional): ``mmvgm.attacks.robustness``.
"""
from mmvgm.attacks.budget import parse_eps
from mmvgm.attacks.encoders import ImageEncoder, build_encoder, list_encoders, register_encoder
from mmvgm.attacks.protect import EmbeddingPGD, protect

__all__ = ["protect", "EmbeddingPGD", "ImageEncoder", "build_encoder", "list_encoders", "register_encoder",
           "parse_eps"]
