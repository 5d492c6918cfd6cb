import pytest

from mmvgm.io.paths import looks_like_text, sniff_container
from tests.media import FORMATS

EXPECTED = {"mp4": "MP4/QuickTime", "mov": "MP4/QuickTime", "mkv": "Matroska/WebM",
            "webm": "Matroska/WebM", "avi": "AVI", "flv": "FLV", "gif": "GIF"}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_sniff_every_container(videos, fmt):
    head = videos[fmt].read_bytes()[:4096]
    assert sniff_container(head) == EXPECTED[FORMATS[fmt][0]]
    assert not looks_like_text(head)


@pytest.mark.parametrize("head, text", [
    (b"hello world\n", True),
    ("caf\u00e9 \u2603".encode("utf-8"), True),
    ("\u2603".encode("utf-8")[:2], True),   # a character cut by the read window
    (b"\x00\x01\x02binary", False),
    (b"\xff\xfe\xfa\xf0\x80\x81 not utf-8 here", False),
])
def test_looks_like_text(head, text):
    assert looks_like_text(head) is text
    assert sniff_container(head) is None
