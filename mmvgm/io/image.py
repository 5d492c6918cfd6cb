"""Still images: ``read_image`` (any common mode -> uint8 RGB) and lossless ``write_image``."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from mmvgm.errors import DecodeError, InputError, LimitError, PathLike
from mmvgm.io.atomic import atomic_path
from mmvgm.io.limits import check_pixels, resolve_max_pixels
from mmvgm.io.paths import IMAGE_EXTENSIONS, check_media_file, existing_path

_EXIF_ORIENTATION = 0x0112


def read_image(path: PathLike, max_pixels: Optional[int] = None) -> np.ndarray:
    """Read an image as uint8 (H, W, 3) RGB, upright.

    - Gray and 1-bit images are replicated to three channels; palette images are expanded.
    - 16-bit images are scaled to 8 bits by ``round(v * 255 / 65535)`` (not truncated).
    - **Transparency is composited on white** (RGBA, LA, palette with a transparent colour),
      so a transparent background reads as white, as viewers show it.
    - The EXIF orientation tag is applied (phone photos come back upright).
    - The size is checked against ``max_pixels`` from the header, before decoding.
    - Animated images (GIF, WebP) give their first frame. A file without a known extension
      is accepted when Pillow recognises its content.

    Raises InputError (missing, unsupported type), DecodeError (empty, corrupt, truncated,
    not an image) or LimitError (larger than the pixel budget).
    """
    from PIL import Image, UnidentifiedImageError

    path = existing_path(path)
    check_media_file(path, IMAGE_EXTENSIONS, "image", sniff=_pillow_knows)
    budget = resolve_max_pixels(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # lazy: reads the header only
    except Image.DecompressionBombError as exc:
        raise _bomb(exc, path) from None
    except UnidentifiedImageError:
        raise DecodeError("not an image, or an image format Pillow cannot read", path) from None
    except OSError as exc:
        raise DecodeError(f"cannot read image header ({exc})", path) from None
    with image:
        check_pixels(image.width, image.height, budget, path)
        wide_color = _is_16bit_color(image)  # before getexif(), which may load a PNG's pixels
        try:
            orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1))
        except Exception:  # noqa: BLE001 - a broken EXIF block must not make the pixels unreadable
            orientation = 1
        try:
            rgb = _read_16bit_color(path) if wide_color else _to_rgb8(image)
        except (OSError, SyntaxError, ValueError) as exc:
            raise DecodeError(f"truncated or corrupt image ({exc})", path) from None
    return np.ascontiguousarray(apply_orientation(rgb, orientation))


def _pillow_knows(path: Path) -> bool:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path):
                return True
    except Exception:  # noqa: BLE001 - any failure means "not an image we accept"
        return False


def image_size(path: PathLike) -> Tuple[int, int]:
    """(width, height) from the header only; DecodeError when it is not an image."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.width, image.height
    except Image.DecompressionBombError as exc:
        raise _bomb(exc, path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"not a readable image ({exc})", path) from None


def _bomb(exc: Exception, path: PathLike) -> LimitError:
    """Pillow refuses images over ~179 MP at open(), before our own budget can look."""
    import re

    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)) / 1e6:.1f} MP" if found else "its size"
    return LimitError(f"image of {size} exceeds the pixel budget (and Pillow's decompression-bomb "
                      f"limit of ~179 MP)", path)


def write_image(path: PathLike, array, protect: Optional[PathLike] = None) -> Path:
    """Write ``array`` as a lossless PNG, atomically (temporary file + rename).

    ``array``: (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA; uint8, or float in [0, 1]
    (rounded to the nearest of 256 levels). Torch tensors are accepted (HWC layout).
    ``protect``: an input path that must not be overwritten (InputError if ``path`` is it).
    """
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError("write_image writes lossless PNG only; use a .png output path", path)
    data = _as_uint8_hwc(array, path)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[data.shape[2]]
    image = Image.fromarray(data[:, :, 0] if mode == "L" else data, mode=mode)
    with atomic_path(path, protect=protect) as tmp:
        image.save(tmp, format="PNG")
    return path


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """A uint8 (H, W, 3) RGB image JPEG-compressed at ``quality`` (1-100) and decoded again."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise InputError(f"OpenCV could not JPEG-encode an image at quality {quality}")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return array if op is None else op(array)


def _is_16bit_color(image) -> bool:
    """Pillow keeps only the high byte of 16-bit colour; such files are decoded with OpenCV."""
    rawmode = image.tile[0].args if image.tile else None
    if isinstance(rawmode, tuple):
        rawmode = rawmode[0] if rawmode else None
    return image.mode in ("RGB", "RGBA") and isinstance(rawmode, str) and ";16" in rawmode


def _to_rgb8(image) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        return _gray_to_rgb(_scale16(np.asarray(image)))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and np.nanmax(values) <= 1.0:
            values = values * 255.0
        return _gray_to_rgb(np.clip(np.round(np.nan_to_num(values)), 0, 255).astype(np.uint8))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
    elif mode in ("1", "L"):
        return _gray_to_rgb(np.asarray(image.convert("L")))
    elif mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    data = np.asarray(image)
    return _composite_on_white(data) if data.shape[2] == 4 else data


def _read_16bit_color(path: Path) -> np.ndarray:
    import cv2

    data = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DecodeError("corrupt 16-bit image", path)
    if data.ndim == 2:
        return _gray_to_rgb(_scale16(data))
    data = _scale16(data)
    if data.shape[2] == 4:
        return _composite_on_white(cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA))
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def _scale16(values: np.ndarray) -> np.ndarray:
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[:, :, :3].astype(np.uint32)
    alpha = rgba[:, :, 3:4].astype(np.uint32)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _as_uint8_hwc(array, path: Path) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    data = np.asarray(array)
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3 or data.shape[2] not in (1, 3, 4) or data.shape[0] < 1 or data.shape[1] < 1:
        raise InputError(f"write_image needs an (H, W), (H, W, 3) or (H, W, 4) array, got shape "
                         f"{tuple(np.shape(array))}", path)
    if data.dtype == np.uint8:
        return np.ascontiguousarray(data)
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all() or data.min() < 0 or data.max() > 1:
            raise InputError("write_image needs float images in [0, 1] (or uint8)", path)
        return np.round(data * 255).astype(np.uint8)
    if data.dtype == bool:
        return data.astype(np.uint8) * 255
    raise InputError(f"write_image needs uint8 or float arrays, got {data.dtype}", path)
