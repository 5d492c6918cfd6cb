"""Input checks shared by the readers: does the path exist, what kind of media is it, and
why a file that will not decode fails (empty, text, truncated container, unknown bytes)."""
from __future__ import annotations

import os
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Callable, Optional, Tuple

from mmvgm.errors import DecodeError, InputError, PathLike

# The one list of video types: ``info``, ``trace``, ``scan`` and the dataset walk all read it. Each
# entry is a container PyAV demuxes; a test writes and decodes the less common ones (.vob, .rm, .swf).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".gif", ".mpg", ".mpeg",
                    ".vob", ".ts", ".m2ts", ".mts", ".wmv", ".asf", ".3gp", ".3g2", ".ogv", ".y4m",
                    ".rm", ".swf")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def existing_path(path: PathLike) -> Path:
    """The path as ``Path``; a missing one -> InputError."""
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise InputError("no such file or directory", p)
    return p


def media_path(path: PathLike, extensions: tuple, kind: str) -> Tuple[Path, bool]:
    """``existing_path``, then ``check_media_file`` unless it is a directory: the path, and
    whether it is a directory (of frames).

    One ``stat`` answers for a readable, non-empty regular file or a directory, the path of
    every read; anything else goes through the checks one by one, which raise their errors.
    """
    p = Path(os.fspath(path)).expanduser()
    try:
        st = os.stat(p)
    except (OSError, ValueError):
        pass  # missing, or not to be looked at: the checks below say which
    else:
        if S_ISDIR(st.st_mode):
            return p, True
        if S_ISREG(st.st_mode) and st.st_size and os.access(p, os.R_OK):
            _check_type(p, extensions, kind, None)
            return p, False
    p = existing_path(p)
    if p.is_dir():
        return p, True
    check_media_file(p, extensions, kind)
    return p, False


def check_media_file(path: Path, extensions: tuple, kind: str,
                     sniff: Optional[Callable[[Path], bool]] = None) -> None:
    """Refuse unreadable, empty and unsupported files before any decoder sees them.

    A file with an unknown extension is still accepted when ``sniff(path)`` recognises its
    content (uploads often lose their extension); videos are sniffed by container magic.
    """
    if not path.is_file():
        raise InputError(f"not a regular file (expected a {kind})", path)
    if not os.access(path, os.R_OK):
        raise InputError("permission denied", path)
    size = path.stat().st_size
    if size == 0:
        raise DecodeError("empty file (0 bytes)", path)
    _check_type(path, extensions, kind, sniff)


def _check_type(path: Path, extensions: tuple, kind: str,
                sniff: Optional[Callable[[Path], bool]]) -> None:
    """Refuse a file whose extension is not one of ``extensions`` and whose content ``sniff``
    does not recognise."""
    if path.suffix.lower() in extensions:
        return
    if sniff is None and kind == "video":
        sniff = is_video_container
    if sniff is not None and sniff(path):
        return
    shown = f"'{path.suffix}'" if path.suffix else "(no extension)"
    hint = ""
    if kind == "video" and path.suffix.lower() in IMAGE_EXTENSIONS:
        hint = "; this is an image: use read_image, or put frames in a directory"
    raise InputError(f"unsupported file type {shown} (supported {kind} types: "
                     f"{', '.join(extensions)}{hint})", path)


def is_video_container(path: Path) -> bool:
    return sniff_container(read_head(path)) is not None


def is_video_file(path: Path) -> bool:
    """What :func:`check_media_file` accepts as a video: a video extension, or a regular file whose
    first bytes announce a video container (an upload that lost its extension).

    A file that cannot be read is not sniffed (False); a folder walk counts it as not a video.
    """
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return True
    try:
        return path.is_file() and is_video_container(path)
    except OSError:
        return False


def read_head(path: Path, size: int = 4096) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def sniff_container(head: bytes) -> Optional[str]:
    """Name of the video container the first bytes announce, or None."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "MP4/QuickTime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska/WebM"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "AVI"
    if head.startswith(b"FLV\x01"):  # FLV has only version 1; the letters alone start texts too
        return "FLV"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "MPEG program stream"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "MPEG transport stream"
    if head.startswith(b"OggS"):
        return "Ogg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "ASF/WMV"
    if head.startswith(b"YUV4MPEG2"):
        return "Y4M"
    if head.startswith(b".RMF"):
        return "RealMedia"
    # "FWS"/"CWS" then a version byte and a binary length: a text file may start with those letters
    if head[:3] in (b"FWS", b"CWS") and len(head) >= 8 and not looks_like_text(head[:8]):
        return "SWF"
    return None


def looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end is still text
        return exc.start >= len(head) - 3
    return True


def refuse_non_video(path: Path) -> None:
    """Refuse, before any decoder runs, a file whose first bytes say it is text and no video
    container, with the message a failed decode of it gives (a service sniffs uploads so)."""
    check_media_file(path, VIDEO_EXTENSIONS, "video")
    head = read_head(path)
    if sniff_container(head) is None and looks_like_text(head):
        raise explain_undecodable(path, "text")


def explain_undecodable(path: Path, detail: str) -> DecodeError:
    """The clearest DecodeError for a video file no backend could decode."""
    head = read_head(path)
    container = sniff_container(head)
    if container is None:
        if looks_like_text(head):
            return DecodeError("not a video: the file contains text", path)
        return DecodeError(f"not a video: unrecognised content that no decoder could open ({detail})",
                           path)
    truncated = _mp4_truncation(path) if container == "MP4/QuickTime" else None
    if truncated:
        return DecodeError(f"truncated {container} file: {truncated}", path)
    return DecodeError(f"truncated or corrupt {container} file ({detail})", path)


def _mp4_truncation(path: Path) -> Optional[str]:
    """Walk the top-level MP4 boxes; say where the file ends early, if it does."""
    size = path.stat().st_size
    names = []
    with open(path, "rb") as fh:
        offset = 0
        while offset + 8 <= size:
            fh.seek(offset)
            header = fh.read(16)
            box_size = int.from_bytes(header[:4], "big")
            name = header[4:8].decode("latin-1")
            if box_size == 1 and len(header) >= 16:
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8:
                return None
            names.append(name)
            if offset + box_size > size:
                return (f"it ends inside its '{name}' box ({size - offset} of {box_size} bytes present)"
                        + ("" if "moov" in names else "; the 'moov' index is missing"))
            offset += box_size
    if "moov" not in names:
        return "the 'moov' index box is missing"
    return None
