"""Media I/O: videos and frame directories as uint8 RGB clips, still images, atomic writes.

    from mmvgm.io import probe, read_clip, read_image, write_image
    info = probe("clip.mp4")                      # frames counted, never read from the header
    clip = read_clip("clip.mp4", 16, "uniform")   # uint8 (16, H, W, 3) RGB; clip.padded, clip.indices
"""
from mmvgm.io.clip import Clip, VideoInfo
from mmvgm.io.image import read_image, write_image
from mmvgm.io.limits import (DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS, default_limits,
                             set_default_limits)
from mmvgm.io.paths import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from mmvgm.io.sampling import Sampling, parse_sampling
from mmvgm.io.video import probe, read_clip, read_clips

__all__ = [
    "Clip", "VideoInfo", "probe", "read_clip", "read_clips", "read_image", "write_image",
    "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_FRAMES", "set_default_limits", "default_limits",
    "Sampling", "parse_sampling", "VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS",
]
