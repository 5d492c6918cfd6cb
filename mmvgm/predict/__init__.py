"""Prediction: the Predictor (the one scoring path), its decoding-worker pool, scan and explain.

Nothing here imports the training package (``mmvgm.engine``)."""
