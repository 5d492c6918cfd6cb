"""Checkpoints: metadata, symmetric save/load, and calibration (fitted by the engine, applied
when predicting)."""
