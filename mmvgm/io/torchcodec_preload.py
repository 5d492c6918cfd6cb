"""Loads the decoders, torchcodec's included, on import: the module a fork server preloads
when its workers are to read with torchcodec (``runtime.workers.preload_fork_server``).

The server imports its preload list itself and survives only an ``ImportError``; torchcodec
raises others when FFmpeg's libraries are missing. ``backends.preload_decoders`` turns that into
a note that leaves torchcodec out (``loaded()`` false), so the workers read with PyAV instead.
"""
from mmvgm.io.backends import preload_decoders

preload_decoders(torchcodec=True)
