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


# -- the one list of video types -----------------------------------------------------------------
# Containers PyAV writes here but tests/media.FORMATS does not cover: (format, codec, sniffed as).
LESS_COMMON = {".vob": ("vob", "mpeg2video", "MPEG program stream"),
               ".rm": ("rm", "rv10", "RealMedia"),
               ".swf": ("swf", "flv", "SWF")}


@pytest.mark.parametrize("ext", list(LESS_COMMON))
@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_less_common_containers_are_listed_and_decode(tmp_path, ext, backend):
    from mmvgm.io import VIDEO_EXTENSIONS, probe, read_clip
    from mmvgm.io.paths import is_video_file
    from tests.media import encode_av, make_frames

    fmt, codec, name = LESS_COMMON[ext]
    path = tmp_path / f"demo{ext}"
    encode_av(str(path), make_frames(10), codec, container_format=fmt)
    assert ext in VIDEO_EXTENSIONS and is_video_file(path)
    assert sniff_container(path.read_bytes()[:4096]) == name
    assert probe(path, backend=backend, exact=True).frames == 10
    clip = read_clip(path, 4, backend=backend)
    assert clip.shape == (4, 48, 64, 3) and clip.backend == backend


def test_magic_letters_at_the_start_of_a_text_are_not_a_video():
    for text in (b"FWS notes: what the scan found\n", b"CWS\n", b"FLV is a container\n"):
        assert sniff_container(text) is None


def test_is_video_file_is_what_the_readers_accept(tmp_path):
    """The folder walk and `info`/`trace` (check_media_file) take the same files as videos."""
    from mmvgm.errors import MMVGMError
    from mmvgm.io.paths import VIDEO_EXTENSIONS, check_media_file, is_video_file
    from tests.media import encode_av, make_frames

    encode_av(str(tmp_path / "upload"), make_frames(3), "mpeg2video", container_format="vob")
    (tmp_path / "clip.MP4").write_bytes(b"not checked by extension")
    (tmp_path / "notes.txt").write_text("FLV is a container\n")
    (tmp_path / "data.bin").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "folder.mp4").mkdir()
    for path in sorted(tmp_path.iterdir()):
        try:
            check_media_file(path, VIDEO_EXTENSIONS, "video")
            accepted = True
        except MMVGMError:
            accepted = False
        assert is_video_file(path) is (accepted or path.is_dir()), path
    assert [p.name for p in sorted(tmp_path.iterdir()) if is_video_file(p)] == ["clip.MP4", "folder.mp4", "upload"]


def test_media_path_answers_as_the_checks_one_by_one(tmp_path, mp4):
    """``media_path`` (one stat on the common path) against ``existing_path``, ``is_dir`` and
    ``check_media_file`` in turn: the same path, the same answer, the same error."""
    import os

    from mmvgm.io.paths import VIDEO_EXTENSIONS, check_media_file, existing_path, media_path

    def one_by_one(path):
        p = existing_path(path)
        if p.is_dir():
            return p, True
        check_media_file(p, VIDEO_EXTENSIONS, "video")
        return p, False

    def outcome(check, path):
        try:
            return check(path)
        except Exception as exc:  # noqa: BLE001 - the error is the answer compared
            return type(exc), str(exc)

    (tmp_path / "frames").mkdir()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.docx").write_text("hello")
    (tmp_path / "upload").write_bytes(mp4.read_bytes())  # no extension: sniffed
    (tmp_path / "link.mp4").symlink_to(mp4)
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    os.mkfifo(tmp_path / "pipe.mp4")  # opening it would block: refused before any decoder
    paths = [mp4, str(mp4), tmp_path / "frames", tmp_path / "missing.mp4", tmp_path / "empty.mp4",
             tmp_path / "notes.docx", tmp_path / "upload", tmp_path / "link.mp4",
             tmp_path / "dangling.mp4", tmp_path / "pipe.mp4", tmp_path / "frames" / "x.mp4" / "y"]
    at_once = lambda p: media_path(p, VIDEO_EXTENSIONS, "video")  # noqa: E731
    for path in paths:
        assert outcome(at_once, path) == outcome(one_by_one, path), path
    assert media_path(mp4, VIDEO_EXTENSIONS, "video") == (mp4, False)
