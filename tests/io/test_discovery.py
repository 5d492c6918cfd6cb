"""mmvgm.io.discovery: folder walks and manifests, labelled (discover) and unlabelled (list_inputs)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from mmvgm.cli import cli
from mmvgm.data.labels import LabelSet
from mmvgm.errors import InputError
from mmvgm.io.discovery import MANIFEST_EXTENSIONS, Sample, discover, list_inputs, write_manifest
from tests.data.conftest import touch_video

FORMATS = ("csv", "jsonl", "ndjson", "txt")


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    """root/<label>/...: videos at two depths, a frame directory, junk that must be ignored."""
    root = tmp_path / "data"
    for label, n in (("real", 5), ("fake", 7)):
        for i in range(n):
            touch_video(root / label / f"clip{i}.mp4")
    touch_video(root / "fake" / "nested" / "deeper" / "x.webm")
    frames = root / "real" / "frames_a"
    for i in range(3):
        touch_video(frames / f"frame_{i}.png")
    touch_video(root / "real" / "notes.txt")
    touch_video(root / "real" / ".hidden.mp4")
    touch_video(root / "real" / "thumb.jpg")  # loose image: ignored with a warning
    touch_video(root / "fake" / "nested" / "poster.png")  # beside a video: a thumbnail, not a frame dir
    touch_video(root / "fake" / "nested" / "y.mov")
    return root


# -- labelled: folder layout ---------------------------------------------------------------------------
def test_folder_discovery_recursive_with_frame_dirs(folder_dataset, caplog):
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        samples = discover(folder_dataset)
    rel = sorted((Path(s.path).relative_to(folder_dataset).as_posix(), s.label) for s in samples)
    assert ("fake/nested/deeper/x.webm", "fake") in rel
    assert ("real/frames_a", "real") in rel
    assert not any(p.endswith((".txt", ".hidden.mp4", "thumb.jpg")) or "frame_0" in p for p, _ in rel)
    assert ("fake/nested/y.mov", "fake") in rel and not any(p.endswith("nested") for p, _ in rel)
    assert sum(1 for _, label in rel if label == "fake") == 9
    assert sum(1 for _, label in rel if label == "real") == 6
    assert samples == sorted(samples) and all(s.split is None for s in samples)
    assert "ignoring 1 image file" in caplog.text and "fake: ignoring 1 image file" in caplog.text


def test_folder_labels_checked_against_label_set(folder_dataset):
    assert len(discover(folder_dataset, labels="detect")) == 15
    touch_video(folder_dataset / "lavi" / "a.mp4")
    with pytest.raises(InputError) as err:
        discover(folder_dataset, labels="detect")
    assert "unknown label 'lavi'" in str(err.value) and "real, fake" in str(err.value)


@pytest.mark.parametrize("make, fragment", [
    (lambda root: root.mkdir(), "no label folders"),
    (lambda root: (root / "real").mkdir(parents=True), "no videos found"),
    (lambda root: None, "dataset not found"),
])
def test_folder_errors(tmp_path, make, fragment):
    root = tmp_path / "d"
    make(root)
    with pytest.raises(InputError, match=fragment):
        discover(root)


# -- labelled: manifests --------------------------------------------------------------------------------
def _videos(folder: Path, n: int = 3) -> list:
    return [touch_video(folder / f"v{i}.mp4") for i in range(n)]


def test_csv_manifest_relative_paths_and_split(tmp_path):
    _videos(tmp_path / "media")
    absolute = touch_video(tmp_path / "elsewhere" / "abs.mkv")
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text("path,label,split,source\n../media/v0.mp4,real,train,x\n"
                        f"../media/v1.mp4,fake,Validation,y\n\n{absolute},fake,,z\n")
    samples = discover(manifest, labels="detect")
    by_name = {Path(s.path).name: s for s in samples}
    assert by_name["v0.mp4"] == Sample(str(tmp_path / "media" / "v0.mp4"), "real", "train")
    assert by_name["v1.mp4"].split == "val"
    assert by_name["abs.mkv"].split is None and by_name["abs.mkv"].path == str(absolute)


def test_jsonl_manifest(tmp_path):
    _videos(tmp_path)
    manifest = tmp_path / "m.jsonl"
    rows = [{"path": "v0.mp4", "label": "lavie"}, {"path": "v1.mp4", "label": "svd-xt", "split": "test"}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    samples = discover(manifest, labels=LabelSet.load("vgmshield9"))
    assert [(Path(s.path).name, s.label, s.split) for s in samples] == [
        ("v0.mp4", "lavie", None), ("v1.mp4", "svd-xt", "test")]


@pytest.mark.parametrize("name, text, fragment", [
    ("m.csv", "path,label\nv0.mp4,lavi\n", "line 2: unknown label 'lavi' (did you mean 'lavie'?)"),
    ("m.csv", "path,lable\nv0.mp4,lavie\n", "needs a 'label' column (is 'lable' a typo?)"),
    ("m.csv", "path,label,split\nv0.mp4,lavie,holdout\n", "unknown split 'holdout'"),
    ("m.csv", "path,label\nv0.mp4,lavie\nv0.mp4,show-1\n", "listed twice with different labels"),
    ("m.csv", "path,label\nv0.mp4,\n", "line 2: empty label"),
    ("m.csv", "", "empty manifest"),
    ("m.jsonl", '{"path": "v0.mp4", "label": "lavie"}\n{oops\n', "line 2: invalid JSON"),
    ("m.jsonl", '["v0.mp4", "lavie"]\n', "expected a JSON object"),
    ("m.doc", "v0.mp4,lavie\n", "not a dataset"),
    ("m.txt", "# list\nv0.mp4 lavie\n", "line 2 ('v0.mp4 lavie') has no label; expected path<TAB>label"),
    ("m.ndjson", '{"path": "v0.mp4"}\n', "line 1: manifest needs a 'label' key"),
    ("m.csv", b"path,label\nv0.mp4,lavie\n\xff.mp4,lavie\n", "line 3: manifest is not UTF-8 text"),
])
def test_manifest_errors_are_one_clear_line(tmp_path, name, text, fragment):
    _videos(tmp_path)
    manifest = tmp_path / name
    manifest.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError) as err:
        discover(manifest, labels="vgmshield9")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_manifest_missing_files_reported(tmp_path, caplog):
    _videos(tmp_path, 1)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nv0.mp4,real\ngone.mp4,fake\nalso_gone.mp4,fake\n")
    with pytest.raises(InputError, match=r"2 listed file\(s\) do not exist: gone.mp4 \(line 3\)"):
        discover(manifest)
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        samples = discover(manifest, on_missing="warn")
    assert [Path(s.path).name for s in samples] == ["v0.mp4"] and "also_gone.mp4" in caplog.text


def test_write_manifest_round_trip(tmp_path):
    samples = [Sample(str(p), "real", "train") for p in _videos(tmp_path / "m")]
    out = write_manifest(tmp_path / "split.csv", samples, relative_to=tmp_path)
    assert out.read_text().splitlines()[1] == "m/v0.mp4,real,train"
    assert discover(out) == samples



# -- unlabelled: list_inputs -------------------------------------------------------------------
def test_list_inputs_folder_is_recursive_and_sorted(tmp_path):
    for rel in ["b/2.mp4", "a/1.webm", "a/deep/3.MOV", "notes.txt", ".hidden/x.mp4", "a/.x.mp4"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    frames = tmp_path / "c" / "frames_clip"
    frames.mkdir(parents=True)
    for i in range(3):
        (frames / f"frame_{i}.png").write_bytes(b"x")
    files, root = list_inputs(tmp_path)
    rel = [os.path.relpath(f, tmp_path) for f in files]
    assert rel == sorted(rel)
    assert set(rel) == {"a/1.webm", "a/deep/3.MOV", "b/2.mp4", "c/frames_clip"}
    assert root == tmp_path


def test_list_inputs_finds_every_video_type_read_clip_reads(tmp_path):
    from mmvgm.io import VIDEO_EXTENSIONS

    for i, ext in enumerate(VIDEO_EXTENSIONS):
        (tmp_path / f"v{i}{ext}").write_bytes(b"x")
    files, _ = list_inputs(tmp_path)
    assert len(files) == len(VIDEO_EXTENSIONS)
    assert list_inputs(tmp_path / "v0.mp4")[0] == [str(tmp_path / "v0.mp4")]
    y4m = tmp_path / f"v{VIDEO_EXTENSIONS.index('.y4m')}.y4m"
    assert list_inputs(y4m)[0] == [str(y4m)]


@pytest.mark.parametrize("kind", ["csv", "jsonl", "ndjson", "txt"])
def test_list_inputs_manifest_relative_to_manifest(tmp_path, kind):
    m = tmp_path / f"list.{kind}"
    if kind == "csv":
        m.write_text("label,path\nfake,v/a.mp4\nreal,/abs/b.mp4\n")
    elif kind in ("jsonl", "ndjson"):
        m.write_text('{"path": "v/a.mp4"}\n\n{"path": "/abs/b.mp4", "label": "x"}\n')
    else:
        m.write_text("# comment\nv/a.mp4\n/abs/b.mp4\n")
    files, root = list_inputs(m)
    assert files == [str(tmp_path / "v/a.mp4"), "/abs/b.mp4"]
    assert root == tmp_path


@pytest.mark.parametrize("kind", ["csv", "jsonl", "ndjson", "txt"])
def test_list_inputs_manifest_with_byte_order_mark(tmp_path, kind):
    text = {"csv": "path,label\nv/a.mp4,fake\n", "jsonl": '{"path": "v/a.mp4"}\n', "ndjson": '{"path": "v/a.mp4"}\n',
            "txt": "v/a.mp4\n"}[kind]
    manifest = tmp_path / f"list.{kind}"
    manifest.write_text(text, encoding="utf-8-sig")  # as Excel and Notepad save it
    assert list_inputs(manifest)[0] == [str(tmp_path / "v/a.mp4")]


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "missing", "no such file"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no videos found"),
    (lambda p: (p / "x.doc").write_text("x") and p / "x.doc", "expected a folder"),
    (lambda p: (p / "m.jsonl").write_text("{bad\n") and p / "m.jsonl", "not JSON"),
    (lambda p: (p / "m.txt").write_text("\n") and p / "m.txt", "lists no files"),
])
def test_list_inputs_bad(tmp_path, setup, message):
    with pytest.raises(InputError, match=message):
        list_inputs(setup(tmp_path))




def test_list_inputs_csv_without_path_header_and_paths_listed_twice(tmp_path, caplog):
    manifest = tmp_path / "list.csv"
    manifest.write_text("v/a.mp4,first\nv/b.mp4,second\n./v/a.mp4,again\n")
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        files, _ = list_inputs(manifest)
    assert files == [str(tmp_path / "v/a.mp4"), str(tmp_path / "v/b.mp4")]  # first column, manifest order
    assert "line 3: './v/a.mp4' is listed twice" in caplog.text


# -- one set of rules for datasets and scans ----------------------------------------------------
def test_txt_manifest_with_tab_labels(tmp_path):
    _videos(tmp_path / "media")
    manifest = tmp_path / "m.txt"
    manifest.write_text("# path<TAB>label[<TAB>split]\n\nmedia/v0.mp4\treal\nmedia/v1.mp4\tfake\tVal\n"
                        f"{tmp_path / 'media' / 'v2.mp4'}\tfake\t\n")
    samples = discover(manifest, labels="detect")
    assert [(Path(s.path).name, s.label, s.split) for s in samples] == [
        ("v0.mp4", "real", None), ("v1.mp4", "fake", "val"), ("v2.mp4", "fake", None)]
    assert list_inputs(manifest)[0] == [s.path for s in samples]  # a scan reads it too, labels ignored


def test_frame_folder_rule_is_the_same_for_datasets_and_scans(tmp_path, caplog):
    root = tmp_path / "data"
    for folder in ("real/clip_a", "real/clip_b", "real/clip_b/thumbnails"):
        for i in range(3):
            touch_video(root / folder / f"frame_{i}.png")   # clip_b has a sub-folder: still one video
    touch_video(root / "fake" / "mixed" / "v.mp4")
    touch_video(root / "fake" / "mixed" / "poster.jpg")     # beside a video: a poster, not a frame
    touch_video(root / "fake" / "mixed" / "deep" / "w.webm")
    touch_video(root / "fake" / "mixed" / "._frame.png")    # hidden: neither a frame nor a poster
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        samples = discover(root)
        files, _ = list_inputs(root)
    expected = {"real/clip_a", "real/clip_b", "fake/mixed/v.mp4", "fake/mixed/deep/w.webm"}
    assert {Path(s.path).relative_to(root).as_posix() for s in samples} == expected
    assert files == [s.path for s in samples]
    assert caplog.text.count("ignoring 1 image file") == 2  # the poster, once per walk


MP4_HEAD = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64   # what the readers sniff as MP4


def test_scan_listing_accounts_for_every_entry(tmp_path, caplog):
    """Each entry of a scanned folder is an input or in exactly one count (issue: a .vob was dropped)."""
    from mmvgm.io.discovery import scan_listing

    root = tmp_path / "uploads"
    for name in ("a.mp4", "demo.vob", "old.rm", "intro.swf", "poster.jpg", "notes.txt", "meta.json",
                 "README", ".DS_Store", ".cache/x.mp4", "clip/f_1.png", "clip/f_2.png", "clip/info.json",
                 "clip/thumbs/t.png", "clip/.hidden"):
        touch_video(root / name)
    (root / "renamed").write_bytes(MP4_HEAD)  # an upload that lost its extension: `info` reads it
    (root / "elsewhere").symlink_to(tmp_path / "other", target_is_directory=True)
    (tmp_path / "other").mkdir()
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        listing = scan_listing(root)
    rel = lambda paths: sorted(Path(p).relative_to(root).as_posix() for p in paths)  # noqa: E731
    assert rel(listing.inputs) == ["a.mp4", "clip", "demo.vob", "intro.swf", "old.rm", "renamed"]
    assert listing.inputs == sorted(listing.inputs) and rel(listing.frame_folders) == ["clip"]
    assert rel(listing.not_videos) == ["README", "meta.json", "notes.txt", "poster.jpg"]
    assert rel(listing.hidden) == [".DS_Store", ".cache"]   # a hidden folder is one entry, not read
    assert rel(listing.links) == ["elsewhere"] and listing.unreadable == []
    assert "ignoring 1 image file" in caplog.text            # the poster
    assert list_inputs(root) == (listing.inputs, root)


def test_images_above_videos_are_not_a_frame_folder(tmp_path, caplog):
    """A folder with a cover image and episode folders used to be one "frame folder": its videos
    were never scanned. A frame folder now holds no video at any depth."""
    root = tmp_path / "shows"
    touch_video(root / "season1" / "cover.jpg")
    touch_video(root / "season1" / "ep1" / "a.mp4")
    touch_video(root / "season1" / "ep2" / "frames" / "f_1.png")
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        files, _ = list_inputs(root)
    assert [Path(f).relative_to(root).as_posix() for f in files] == ["season1/ep1/a.mp4",
                                                                      "season1/ep2/frames"]
    assert "ignoring 1 image file" in caplog.text


def test_a_gif_beside_videos_is_a_video_not_a_loose_image(tmp_path, caplog):
    touch_video(tmp_path / "d" / "a.mp4")
    touch_video(tmp_path / "d" / "b.gif")
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        files, _ = list_inputs(tmp_path)
    assert [Path(f).name for f in files] == ["a.mp4", "b.gif"] and "ignoring" not in caplog.text


def test_a_single_file_is_a_video_by_extension_or_by_content(tmp_path):
    (tmp_path / "upload").write_bytes(MP4_HEAD)
    touch_video(tmp_path / "demo.vob")
    assert list_inputs(tmp_path / "upload")[0] == [str(tmp_path / "upload")]
    assert list_inputs(tmp_path / "demo.vob")[0] == [str(tmp_path / "demo.vob")]
    (tmp_path / "notes").write_text("text")
    with pytest.raises(InputError, match="expected a folder of videos"):
        list_inputs(tmp_path / "notes")


def test_no_videos_found_says_what_was_there(tmp_path):
    for name in ("a.txt", "b.txt", "c.json"):
        touch_video(tmp_path / name)
    with pytest.raises(InputError, match=r"\.vob.*3 other file\(s\): \.txt, \.json"):
        list_inputs(tmp_path)


def test_an_unreadable_folder_is_counted_and_warned(tmp_path, caplog, monkeypatch):
    import mmvgm.io.discovery as discovery
    from mmvgm.io.discovery import scan_listing

    touch_video(tmp_path / "a.mp4")
    locked = tmp_path / "locked"
    touch_video(locked / "b.mp4")
    scandir = os.scandir

    def refuse_locked(path):  # as chmod 0 does, for any user (root reads every folder)
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(discovery.os, "scandir", refuse_locked)
    with caplog.at_level(logging.WARNING, logger="mmvgm.data"):
        listing = scan_listing(tmp_path)
    assert listing.inputs == [str(tmp_path / "a.mp4")] and listing.unreadable == [str(locked)]
    assert "locked: cannot list this folder (Permission denied)" in caplog.text


def test_the_four_manifest_formats():
    assert MANIFEST_EXTENSIONS == tuple(f".{kind}" for kind in FORMATS)


def _write_listing(path: Path, rows: list) -> Path:
    """``rows`` of (path, label, split) written in the format ``path``'s extension names."""
    kind = path.suffix[1:]
    if kind == "csv":
        text = "path,label,split\n" + "".join(f"{p},{label},{split}\n" for p, label, split in rows)
    elif kind in ("jsonl", "ndjson"):
        text = "".join(json.dumps({"path": p, "label": label, "split": split}) + "\n" for p, label, split in rows)
    else:
        text = "# path<TAB>label<TAB>split\n" + "".join(f"{p}\t{label}\t{split}\n" for p, label, split in rows)
    path.write_text(text)
    return path


@pytest.fixture
def listed(tmp_path: Path):
    """Four real and four lavie videos, and the (relative path, label, split) rows listing them."""
    rows = []
    for label in ("real", "lavie"):
        for i in range(4):
            touch_video(tmp_path / "media" / label / f"{i}.mp4", content=f"{label}{i}".encode())
            rows.append((f"media/{label}/{i}.mp4", label, ""))
    return tmp_path, rows


class _ListingPredictor:
    """Stands in for a checkpoint: records the paths `mmvgm scan` sends it and scores none."""

    source_labels = ("lavie",)
    frames, sampling = 8, "consecutive"
    meta = SimpleNamespace(warning=None)  # `mmvgm scan` prints a checkpoint's warning

    def __init__(self) -> None:
        self.seen: list = []

    def __enter__(self) -> "_ListingPredictor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def check_frames(self, frames):
        return frames or self.frames

    def stream(self, paths, batch_size=8, workers=0, **_):
        self.seen.extend(paths)
        return iter(())


def _scanned(manifest: Path, out: Path, monkeypatch) -> list:
    from mmvgm.predict.predictor import Predictor

    fake = _ListingPredictor()
    monkeypatch.setattr(Predictor, "from_checkpoint", staticmethod(lambda *args, **kwargs: fake))
    result = CliRunner().invoke(cli, ["scan", str(manifest), "-c", "unused", "--out", str(out), "-j", "0", "-q"])
    assert result.exit_code == 0, result.output
    return fake.seen


@pytest.mark.parametrize("kind", FORMATS)
def test_train_dataset_and_scan_read_every_manifest_format(listed, kind, monkeypatch):
    from mmvgm.engine.tasks import task_label_set, task_splits

    root, rows = listed
    manifest = _write_listing(root / f"list.{kind}", rows)
    expected = sorted(str(root / p) for p, _, _ in rows)
    assert [s.path for s in discover(manifest)] == expected            # train, eval
    splits, info = task_splits(manifest, "detect", task_label_set("detect"), [0.5, 0.25, 0.25], 2024)
    assert sorted(s.path for split in splits.values() for s in split) == expected and info["n"] == 8
    result = CliRunner().invoke(cli, ["dataset", str(manifest), "--json"])  # mmvgm dataset
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total"] == 8
    assert _scanned(manifest, root / "r.jsonl", monkeypatch) == [str(root / p) for p, _, _ in rows]


def test_dataset_cli_txt_line_without_label_is_one_line(listed):
    root, _ = listed
    manifest = root / "list.txt"
    manifest.write_text("media/real/0.mp4\n")
    result = CliRunner().invoke(cli, ["dataset", str(manifest)])
    assert result.exit_code == 1
    assert "line 1 ('media/real/0.mp4') has no label; expected path<TAB>label[<TAB>split]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["scan", "train", "dataset", "eval"])
def test_help_names_the_same_four_formats(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and all(ext in result.output for ext in MANIFEST_EXTENSIONS)
