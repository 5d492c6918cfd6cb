"""`mmvgm protect` and `mmvgm protect-eval` end to end, with tiny random SVD encoders on disk."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mmvgm.cli import cli
from tests.attacks.conftest import make_svd_dir, random_image


@pytest.fixture(scope="module")
def svd(tmp_path_factory):
    return make_svd_dir(tmp_path_factory.mktemp("svd"))


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "fast.yaml"
    path.write_text("base: default\nsteps: 4\nencoder_options:\n  vae_max_side: 64\n")
    return str(path)


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def save(path, array):
    Image.fromarray(array).save(path)
    return path


def read(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_odd_size_same_size_and_linf_on_the_saved_png(tmp_path, svd, fast):
    img = save(tmp_path / "photo.png", random_image(333, 517))
    res = run("protect", img, "--encoder", "svd", "--model-path", svd, "--config", fast, "--json", "-q")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    out = tmp_path / "photo.protected.png"
    assert rep["output"] == str(out) and out.is_file()
    saved, orig = read(out), read(img)
    assert saved.shape == orig.shape == (333, 517, 3)
    linf = np.abs(saved.astype(int) - orig.astype(int)).max() / 255
    assert 0 < linf <= 4 / 255 and rep["linf"] == pytest.approx(linf)
    assert rep["lpips"] is None and set(rep["encoders"]) == {"clip", "vae"}
    assert list(tmp_path.glob(".*tmp*")) == []  # atomic write left nothing behind


def test_directed_with_a_target_of_another_size_and_report_file(tmp_path, svd, fast):
    img = save(tmp_path / "a.png", random_image(48, 64, 1))
    tgt = save(tmp_path / "t.png", random_image(20, 90, 2))
    res = run("protect", img, "--target", tgt, "--eps", "8/255", "--steps", "8", "-m", svd, "--config", fast,
              "--out", tmp_path / "out", "--report", tmp_path / "r.json", "-q")
    assert res.exit_code == 0, res.output
    assert "clip: cos to target" in res.stdout
    reports = json.loads((tmp_path / "r.json").read_text())
    assert len(reports) == 1 and reports[0]["mode"] == "directed"
    for c in reports[0]["encoders"].values():
        assert c["cos_after"] > c["cos_before"]
    assert (tmp_path / "out" / "a.protected.png").is_file()


def test_undirected_moves_away(tmp_path, svd, fast):
    img = save(tmp_path / "u.png", random_image(40, 40, 3))
    res = run("protect", img, "-m", svd, "--config", fast, "--steps", "6", "--json", "-q")
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert rep["mode"] == "undirected"
    assert all(c["cos_after"] < c["cos_before"] for c in rep["encoders"].values())


def test_rgba_gray_and_16_bit_inputs_are_converted(tmp_path, svd, fast):
    rgb = random_image(30, 36, 4)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    paths = [save(tmp_path / "rgba.png", rgba), save(tmp_path / "gray.png", rgb[..., 0]),
             tmp_path / "deep.png"]
    cv2.imwrite(str(paths[2]), (rgb.astype(np.uint16) * 257)[..., ::-1])  # 16-bit RGB
    res = run("protect", *paths, "-m", svd, "--config", fast, "--json", "-q")
    assert res.exit_code == 0, res.output
    for p in paths:
        out = tmp_path / f"{p.stem}.protected.png"
        saved = Image.open(out)
        assert saved.mode == "RGB" and saved.size == (36, 30)
    deep_orig = rgb  # 16-bit values v*257 scale back exactly to v
    assert np.abs(read(tmp_path / "deep.protected.png").astype(int) - deep_orig).max() <= 4


def test_many_images_one_bad_the_rest_continue(tmp_path, svd, fast):
    good = save(tmp_path / "good.png", random_image(24, 24))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    res = run("protect", bad, tmp_path / "missing.png", good, "-m", svd, "--config", fast, "--json", "-q")
    assert res.exit_code == 1
    lines = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert [("error" in r) for r in lines] == [True, True, False]
    assert (tmp_path / "good.protected.png").is_file()
    assert "2 of 3 images failed" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize("args, words", [
    (["--eps", "5/0"], "divides by zero"), (["--eps", "-1"], "eps must be > 0"), (["--eps", "2"], "2/255"),
    (["--steps", "0"], "steps must be >= 1"), (["--eot", "rotate"], "unknown EOT"),
    (["--step-size", "-1/255"], "step size must be > 0"), (["--batch-size", "0"], "batch size must be >= 1"),
])
def test_bad_options_give_one_line(tmp_path, svd, fast, args, words):
    img = save(tmp_path / "x.png", random_image(16, 16))
    res = run("protect", img, "-m", svd, "--config", fast, *args)
    assert res.exit_code != 0 and words in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not (tmp_path / "x.protected.png").exists()


def test_missing_model_path_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.delenv("MMVGM_PROTECT_MODEL", raising=False)
    img = save(tmp_path / "x.png", random_image(16, 16))
    res = run("protect", img)
    assert res.exit_code != 0
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1
    assert all(s in line for s in ("image_encoder/", "feature_extractor/", "vae/", "--model-path"))
    res = run("protect", img, "-m", tmp_path / "nowhere")
    assert res.exit_code != 0 and "model folder not found" in res.stderr


def test_output_equal_to_input_is_refused(tmp_path, svd, fast):
    img = save(tmp_path / "x.png", random_image(16, 16))
    before = img.read_bytes()
    res = run("protect", img, "--out", img, "-m", svd, "--config", fast)
    assert res.exit_code != 0 and "overwrite the input" in res.stderr
    assert img.read_bytes() == before


def test_report_over_an_input_is_refused(tmp_path, svd, fast):
    img = save(tmp_path / "x.png", random_image(16, 16))
    tgt = save(tmp_path / "t.png", random_image(16, 16, 1))
    before = img.read_bytes(), tgt.read_bytes()
    for args in (("protect", img, "--target", tgt, "--report", tgt, "-m", svd, "--config", fast, "-q"),
                 ("protect", img, "--report", img, "-m", svd, "--config", fast, "-q"),
                 ("protect-eval", img, tgt, "--report", tgt, "-m", svd)):
        res = run(*args)
        assert res.exit_code != 0 and "overwrite the input" in res.stderr, args
    assert (img.read_bytes(), tgt.read_bytes()) == before
    assert not (tmp_path / "x.protected.png").exists()


def test_protect_eval_table_and_json(tmp_path, svd, fast):
    img = save(tmp_path / "o.png", random_image(32, 40, 5))
    tgt = save(tmp_path / "t.png", random_image(32, 40, 6))
    assert run("protect", img, "--target", tgt, "-m", svd, "--config", fast, "--eps", "8/255", "-q").exit_code == 0
    prot = tmp_path / "o.protected.png"
    res = run("protect-eval", img, prot, "--target", tgt, "-m", svd, "--purify", "jpeg:75,resize:0.5")
    assert res.exit_code == 0, res.output
    assert "jpeg:75" in res.stdout and "survival" in res.stdout
    res = run("protect-eval", img, prot, "-m", svd, "--json", "--report", tmp_path / "e.json")
    data = json.loads(res.stdout)
    assert data["mode"] == "undirected" and len(data["results"]) == 5
    assert json.loads((tmp_path / "e.json").read_text()) == data
    res = run("protect-eval", img, prot, "-m", svd, "--purify", "jpeg:0")
    assert res.exit_code != 0 and "1-100" in res.stderr


def test_help_has_examples_in_a_subprocess():
    out = subprocess.run([sys.executable, "-m", "mmvgm", "protect", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "Examples:" in out.stdout and "--eps" in out.stdout


def test_lpips_null_with_a_note_or_a_number_with_local_weights(tmp_path, svd, fast, monkeypatch):
    import torch
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    img = save(tmp_path / "l.png", random_image(24, 24))
    res = run("protect", img, "-m", svd, "--config", fast, "--json")
    assert json.loads(res.stdout.strip())["lpips"] is None and "note: LPIPS is off" in res.stderr
    res = run("protect", img, "-m", svd, "--config", fast, "--json", "-q")
    assert json.loads(res.stdout.strip())["lpips"] is None and res.exit_code == 0
    assert res.stderr == ""  # -q: no progress bar and no note
    pytest.importorskip("lpips")
    feats = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items()
             if k.startswith("features.")}
    torch.save(feats, tmp_path / "alex.pth")
    res = run("protect", img, "-m", svd, "--config", fast, "--json", "-q", "--lpips-weights", tmp_path / "alex.pth")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip())["lpips"] >= 0 and "LPIPS is off" not in res.stderr


def test_report_lines_without_ssim_psnr_or_lpips(capsys):
    from mmvgm.cli.protect import _print_report

    _print_report({"path": "a.png", "output": "a.protected.png", "mode": "undirected", "eps": 4 / 255, "steps": 2,
                   "seconds": 0.1, "linf": 1 / 255, "l2": 0.01, "psnr": None, "ssim": None, "lpips": None,
                   "encoders": {"clip": {"cos_before": 1.0, "cos_after": 0.9}}})
    out = capsys.readouterr().out
    assert "PSNR inf dB" in out and "SSIM n/a" in out and "LPIPS off" in out


def test_a_missing_input_is_reported_before_models_load_and_before_the_lpips_note(tmp_path, svd, fast,
                                                                                 monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    good = save(tmp_path / "good.png", random_image(24, 24))
    res = run("protect", tmp_path / "missing.png", good, "-m", svd, "--config", fast, "--json",
              "--report", tmp_path / "r.json")
    assert res.exit_code == 1
    err = res.stderr
    missing = f"mmvgm: error: {tmp_path / 'missing.png'}: no such file or directory"
    assert err.count(missing) == 1 and err.index(missing) < err.index("note: LPIPS is off")
    reports = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert [("error" in r) for r in reports] == [True, False]  # input order, as before
    assert json.loads((tmp_path / "r.json").read_text()) == reports
    assert (tmp_path / "good.protected.png").is_file()


@pytest.mark.parametrize("where", ["image", "target"])
def test_a_missing_input_fails_before_a_model_is_looked_for(tmp_path, where):
    img = save(tmp_path / "x.png", random_image(16, 16))
    args = [tmp_path / "gone.png"] if where == "image" else [img, "--target", tmp_path / "gone.png"]
    res = run("protect", *args, "-m", tmp_path / "no-model-here")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"{tmp_path / 'gone.png'}: no such file or directory" in res.stderr
    assert "model folder not found" not in res.stderr and "note:" not in res.stderr
    assert not (tmp_path / "x.protected.png").exists()


def test_a_folder_of_mixed_sizes_with_a_non_image(tmp_path, svd, fast):
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = [save(folder / "p1.png", random_image(24, 32, 1)), save(folder / "p2.jpg", random_image(20, 20, 2)),
             save(folder / "p10.png", random_image(24, 32, 3))]
    (folder / "notes.txt").write_text("not an image")
    res = run("protect", folder, "-m", svd, "--config", fast, "--json", "--batch-size", "2",
              "--report", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    assert "note: " in res.stderr and "skipped 1" in res.stderr and "notes.txt" in res.stderr
    reports = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert sorted(r["path"] for r in reports) == sorted(map(str, paths))
    assert [r["path"] for r in reports][:2] == [str(paths[0]), str(paths[2])]  # 24x32 together, natural order
    assert json.loads((tmp_path / "r.json").read_text()) == reports
    for rep in reports:
        saved, orig = read(rep["output"]), read(rep["path"])
        assert saved.shape == orig.shape
        assert np.abs(saved.astype(int) - orig.astype(int)).max() <= 4 and rep["linf"] <= 4 / 255
    assert list(folder.glob(".*tmp*")) == []
    before = {p: p.read_bytes() for p in paths}
    again = run("protect", folder, "-m", svd, "--config", fast, "--json", "-q")  # earlier outputs are not inputs
    assert again.exit_code == 0, again.output
    assert len(again.stdout.strip().splitlines()) == 3 and again.stderr == ""
    assert {p: p.read_bytes() for p in paths} == before


def test_a_folder_without_images_is_one_error(tmp_path, svd, fast):
    (tmp_path / "empty").mkdir()
    good = save(tmp_path / "good.png", random_image(16, 16))
    res = run("protect", tmp_path / "empty", good, "-m", svd, "--config", fast, "--json", "-q")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"{tmp_path / 'empty'}: folder has no images" in res.stderr and "1 of 2 images failed" in res.stderr
    assert (tmp_path / "good.protected.png").is_file()
