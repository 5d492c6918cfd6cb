import numpy as np
import pytest
from PIL import Image, ImageOps

from mmvgm.errors import DecodeError, InputError, LimitError
from mmvgm.io import read_image, write_image
from tests.io.conftest import png_with_claimed_size

RNG = np.random.default_rng(1)


def rgb(h=12, w=20) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_rgb_png(tmp_path):
    data = rgb()
    Image.fromarray(data).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (12, 20, 3)
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_gray_becomes_three_equal_channels(tmp_path, mode):
    gray = RNG.integers(0, 256, size=(9, 7), dtype=np.uint8)
    image = Image.fromarray(gray).convert(mode)
    image.save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    expected = np.asarray(image.convert("L"))
    assert out.shape == (9, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], expected)


def test_rgba_is_composited_on_white(tmp_path):
    data = np.zeros((2, 2, 4), np.uint8)
    data[..., :3] = (100, 50, 0)
    data[..., 3] = [[0, 255], [128, 64]]
    Image.fromarray(data, "RGBA").save(tmp_path / "t.png")
    out = read_image(tmp_path / "t.png").astype(int)
    assert out[0, 0].tolist() == [255, 255, 255]          # fully transparent -> white
    assert out[0, 1].tolist() == [100, 50, 0]             # opaque -> unchanged
    expected = np.round((np.array([100, 50, 0]) * 128 + 255 * 127) / 255)
    assert np.abs(out[1, 0] - expected).max() <= 1


def test_gray_with_alpha(tmp_path):
    data = np.array([[[10, 0], [10, 255]]], np.uint8)
    Image.fromarray(data, "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png")[0].tolist() == [[255] * 3, [10] * 3]


def test_16bit_gray_is_scaled_not_truncated(tmp_path):
    import cv2

    values = np.array([[0, 257, 32768, 65535, 128, 65000]], np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), values)
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = read_image(tmp_path / "g16.png")
    expected = np.round(values.astype(float) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :, 0], expected)
    np.testing.assert_array_equal(out[:, :, 2], expected)


def test_16bit_color_keeps_all_bits_and_rgb_order(tmp_path):
    import cv2

    rgb16 = RNG.integers(0, 65536, size=(5, 6, 3), dtype=np.uint16)
    rgb16[0, 0] = (65535, 0, 32896)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[:, :, ::-1].copy())  # OpenCV writes BGR
    out = read_image(tmp_path / "c16.png")
    expected = np.round(rgb16.astype(float) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out[0, 0].tolist() == [255, 0, 128]


def test_16bit_rgba_is_composited(tmp_path):
    import cv2

    bgra = np.zeros((2, 2, 4), np.uint16)
    bgra[..., 2] = 65535          # red
    bgra[..., 3] = [[0, 65535], [0, 65535]]
    cv2.imwrite(str(tmp_path / "c16a.png"), bgra)
    out = read_image(tmp_path / "c16a.png")
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [255, 0, 0]


def test_palette_and_palette_with_transparency(tmp_path):
    data = rgb(8, 8)
    pal = Image.fromarray(data).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))
    pal.info["transparency"] = int(np.asarray(pal)[0, 0])
    pal.save(tmp_path / "pt.png", transparency=int(np.asarray(pal)[0, 0]))
    out = read_image(tmp_path / "pt.png")
    assert out[0, 0].tolist() == [255, 255, 255]


def test_cmyk_jpeg(tmp_path):
    Image.fromarray(rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (12, 20, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("ext", ["png", "jpg"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation, ext):
    data = np.zeros((12, 20, 3), np.uint8)
    data[:4, :6] = (255, 0, 0)  # a red block at the top-left corner
    image = Image.fromarray(data)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o.{ext}"
    image.save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    out = read_image(path)
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)
    if orientation >= 5:
        assert out.shape[:2] == (20, 12)


# ---- bad input ---------------------------------------------------------------------------

def test_bad_images_each_have_their_own_error(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(rgb(64, 64)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:300])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image\n")
    (tmp_path / "notes.txt").write_text("hello")
    cases = [
        (tmp_path / "missing.png", InputError, "no such file"),
        (tmp_path / "empty.png", DecodeError, "empty file"),
        (cut, DecodeError, "truncated or corrupt image"),
        (tmp_path / "text.png", DecodeError, "not an image"),
        (tmp_path / "notes.txt", InputError, "unsupported file type"),
    ]
    for path, error, match in cases:
        with pytest.raises(error, match=match) as caught:
            read_image(path)
        assert caught.value.path == str(path)


def test_pixel_budget_is_checked_on_the_header(tmp_path, monkeypatch):
    Image.fromarray(rgb(8, 8)).save(tmp_path / "small.png")
    png_with_claimed_size(tmp_path / "small.png", tmp_path / "big.png", 10000, 9000)
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(LimitError, match="10000x9000"):
        read_image(tmp_path / "big.png")
    with pytest.raises(LimitError, match="8x8"):
        read_image(tmp_path / "small.png", max_pixels=63)


# ---- write_image -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(9, 7, 3), (9, 7), (9, 7, 4), (9, 7, 1)])
def test_write_image_is_lossless_png(tmp_path, shape):
    data = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    out = write_image(tmp_path / "x.png", data)
    with Image.open(out) as image:
        assert image.format == "PNG"
        back = np.asarray(image)
    np.testing.assert_array_equal(back, data.reshape(back.shape))
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_write_image_accepts_floats_and_tensors(tmp_path):
    import torch

    data = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    write_image(tmp_path / "f.png", data)
    assert read_image(tmp_path / "f.png").tolist() == [[[0, 128, 255]]]
    write_image(tmp_path / "t.png", torch.from_numpy(data))
    assert read_image(tmp_path / "t.png").tolist() == [[[0, 128, 255]]]


@pytest.mark.parametrize("name, data, match", [
    ("x.jpg", np.zeros((4, 4, 3), np.uint8), "PNG only"),
    ("x.png", np.zeros((4, 4, 2), np.uint8), "array"),
    ("x.png", np.zeros((4,), np.uint8), "array"),
    ("x.png", np.full((4, 4, 3), 1.5, np.float32), r"\[0, 1\]"),
    ("x.png", np.zeros((4, 4, 3), np.int32), "uint8 or float"),
])
def test_write_image_refuses(tmp_path, name, data, match):
    with pytest.raises(InputError, match=match):
        write_image(tmp_path / name, data)
    assert not (tmp_path / name).exists()


def test_write_image_never_overwrites_the_protected_input(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(rgb()).save(src)
    before = src.read_bytes()
    with pytest.raises(InputError, match="overwrite the input"):
        write_image(src, np.zeros((12, 20, 3), np.uint8), protect=src)
    assert src.read_bytes() == before


def test_write_image_is_atomic(tmp_path, monkeypatch):
    dest = tmp_path / "out.png"
    dest.write_bytes(b"old")

    def broken_save(self, *args, **kwargs):
        open(args[0], "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        write_image(dest, np.zeros((4, 4, 3), np.uint8))
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_extensionless_image_and_gif(tmp_path):
    data = rgb()
    Image.fromarray(data).save(tmp_path / "upload", format="PNG")
    np.testing.assert_array_equal(read_image(tmp_path / "upload"), data)
    Image.fromarray(data).quantize(colors=8).save(tmp_path / "still.gif")
    out = read_image(tmp_path / "still.gif")
    assert out.shape == (12, 20, 3) and out.dtype == np.uint8
