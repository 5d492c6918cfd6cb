"""Every purification kind (tiny local upscale and img2img pipelines), their errors, the CLI, and
that EOT over JPEG (blur) makes a protection survive JPEG (blur)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mmvgm.attacks import protect
from mmvgm.attacks.generation import _load_cached
from mmvgm.attacks.purify import PURIFIERS, evaluate_protection, parse_purify, survival_side_by_side
from mmvgm.errors import InputError
from tests.attacks.conftest import random_image
from tests.torch_threads import one_torch_thread
from tests.attacks.i2v_pipelines import img2img_pipeline, upscale_pipeline


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def upscale_dir(tmp_path_factory):
    return upscale_pipeline(tmp_path_factory.mktemp("upscale"))


@pytest.fixture(scope="session")
def sd_dir(tmp_path_factory):
    return img2img_pipeline(tmp_path_factory.mktemp("sd"))


def all_kinds(upscale_dir, sd_dir):
    return f"jpeg:75,resize:0.5,blur:1,noise:0.02,upscale:{upscale_dir},diffpure:{sd_dir}:0.1"


def test_every_kind_keeps_the_size_and_is_seeded(upscale_dir, sd_dir):
    img = random_image(33, 51, 1)
    specs = parse_purify(all_kinds(upscale_dir, sd_dir))
    assert [p.name for p in specs] == ["none", "jpeg", "resize", "blur", "noise", "upscale", "diffpure"]
    assert set(PURIFIERS) >= {p.name for p in specs[1:]}
    assert str(specs[5]) == f"upscale:{upscale_dir}:20" and str(specs[6]) == f"diffpure:{sd_dir}:0.1"
    for p in specs[1:]:
        out = p(img)
        assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img), p
        assert np.array_equal(out, p(img)), p  # a fixed seed: original and protected get the same draw


def test_a_pipeline_named_twice_loads_once(upscale_dir, monkeypatch):
    import diffusers

    calls = []
    real = diffusers.StableDiffusionUpscalePipeline.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args[0])
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(diffusers.StableDiffusionUpscalePipeline, "from_pretrained", classmethod(counting))
    _load_cached.cache_clear()
    img = random_image(16, 16, 2)
    specs = parse_purify(f"upscale:{upscale_dir},upscale:{upscale_dir}:30,upscale:{upscale_dir}")
    assert len(specs) == 3  # none + two distinct (a repeat is one)
    for p in specs[1:]:
        p(img), p(img)
    assert len(calls) == 1


@pytest.mark.parametrize("spec, words", [
    ("noise", "needs a sigma"), ("noise:0", r"\(0, 1\]"), ("noise:x", "not a number"),
    ("upscale", "StableDiffusionUpscalePipeline folder"), ("upscale:/no/such/dir", "pipeline folder not found"),
    ("diffpure:0.1", "needs a folder and a strength"), ("diffpure:{sd}:2", r"strength must be in \(0, 1\]"),
    ("diffpure:{sd}:x", "not a number"), ("diffpure:/no/such:0.1", "pipeline folder not found"),
])
def test_bad_specs_are_one_line(spec, words, sd_dir):
    with pytest.raises(InputError, match=words) as info:
        parse_purify(spec.format(sd=sd_dir))
    assert len(str(info.value).splitlines()) == 1


def test_noise_level_above_the_pipelines_maximum(upscale_dir):
    p, = parse_purify(f"upscale:{upscale_dir}:999")[1:]
    with pytest.raises(InputError, match="above this pipeline's 350"):
        p(random_image(16, 16))


def test_survival_through_pipeline_purifications(svd_encoder, fast_config, upscale_dir, sd_dir):
    img = random_image(32, 32, 3)
    prot, _ = protect(img, svd_encoder, eps=8 / 255, steps=4, config=str(fast_config))
    res = evaluate_protection(img, prot, svd_encoder, purify=f"upscale:{upscale_dir},diffpure:{sd_dir}:0.2")
    assert [r["purification"].split(":")[0] for r in res["results"]] == ["none", "upscale", "diffpure"]
    for row in res["results"]:
        assert set(row["encoders"]) == {"clip", "vae"}
    rows = survival_side_by_side({"a": res, "b": res})
    assert len(rows) == 6 and all(r["a"] == r["b"] for r in rows)


def survival_after(encoder, eot, purify):
    """Mean VAE-latent survival after ``purify`` over a few images (one tiny image is noisy)."""
    out = []
    for seed in range(3):
        img = random_image(48, 48, 10 + seed)
        prot, _ = protect(img, encoder, eps=8 / 255, steps=20, eot=eot, seed=seed, lpips_weight=0)
        out.append(evaluate_protection(img, prot, encoder, purify=purify)["results"][1]["encoders"]["vae"]["survival"])
    return float(np.mean(out))


@pytest.mark.parametrize("eot, purify", [("jpeg", "jpeg:75"), ("blur", "blur:1")])
def test_eot_over_a_purification_raises_the_survival_after_it(svd_encoder, eot, purify):
    """Not noise: noise:0.02 leaves most of this encoder's shift with or without EOT."""
    plain, robust = survival_after(svd_encoder, None, purify), survival_after(svd_encoder, eot, purify)
    assert plain < 0.3, plain  # the purification strips most of a protection made without EOT
    assert robust > plain + 0.15 and robust > 2 * plain, (plain, robust)


def test_cli_purify_with_pipelines_and_compare(tmp_path, svd_dir, upscale_dir, sd_dir):
    from mmvgm.cli import cli

    img = random_image(32, 32, 4)
    for name, array in (("a", img), ("b", np.clip(img.astype(int) + 6, 0, 255)), ("c", np.clip(img.astype(int) - 6, 0, 255))):
        Image.fromarray(array.astype(np.uint8)).save(tmp_path / f"{name}.png")
    spec = f"jpeg:75,upscale:{upscale_dir},diffpure:{sd_dir}:0.1"
    args = ["protect-eval", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-m", str(svd_dir), "--purify", spec, "-q"]
    res = CliRunner().invoke(cli, args + ["--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [r["purification"] for r in data["results"]] == ["none", "jpeg:75", f"upscale:{upscale_dir}:20",
                                                            f"diffpure:{sd_dir}:0.1"]
    res = CliRunner().invoke(cli, args + ["--compare", str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.output
    assert "(compare)" in res.stdout and f"upscale:{upscale_dir}:20" in res.stdout
    res = CliRunner().invoke(cli, args[:5] + ["--purify", "diffpure:/no/such:0.1"])
    assert res.exit_code != 0 and "pipeline folder not found" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
