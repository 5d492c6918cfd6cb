"""Loads torchcodec's decoders on import, where they work: the module a fork server preloads
when its workers are to read with torchcodec (``runtime.workers.preload_fork_server``).

The server imports its preload list itself and survives only an ``ImportError``; torchcodec
raises others when FFmpeg's libraries are missing, which ``torchcodec_reader`` turns into a
note that leaves it out (``loaded()`` false), so the workers read with PyAV instead.
"""
from mmvgm.errors import MMVGMError
from mmvgm.io import torchcodec_reader

try:
    torchcodec_reader._decoders()
except MMVGMError:
    pass
