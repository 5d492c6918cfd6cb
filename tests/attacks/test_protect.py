import numpy as np
import pytest
import torch

from mmvgm.attacks import EmbeddingPGD, protect
from mmvgm.attacks.encoders import ImageEncoder, resize
from mmvgm.attacks.protect import (EOT_TRANSFORMS, PerImageRandom, ProtectOptions, gaussian_blur, match_size,
                                   parse_eot, quantize_to_ball)
from mmvgm.errors import InputError
from tests.attacks.conftest import random_image


ALL_EOT = "jpeg,resize,blur,noise"


@pytest.fixture(scope="module")
def fast(fast_config):
    return {"config": str(fast_config)}


def test_directed_moves_toward_the_target(svd_encoder, fast):
    img, tgt = random_image(40, 56, 1), random_image(30, 30, 2)  # the target has another size
    out, rep = protect(img, svd_encoder, eps="8/255", steps=10, target=tgt, **fast)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert rep["mode"] == "directed"
    for name in ("clip", "vae"):
        assert rep["encoders"][name]["cos_after"] > rep["encoders"][name]["cos_before"]
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 8
    assert rep["linf"] <= 8 / 255


def test_undirected_moves_away_from_the_original(svd_encoder, fast):
    img = random_image(40, 56, 3)
    out, rep = protect(img, svd_encoder, eps=4 / 255, steps=10, **fast)
    assert rep["mode"] == "undirected"
    for name in ("clip", "vae"):
        assert rep["encoders"][name]["cos_before"] == pytest.approx(1.0, abs=1e-5)
        assert rep["encoders"][name]["cos_after"] < rep["encoders"][name]["cos_before"]
    assert 0 < rep["linf"] <= 4 / 255 and rep["psnr"] > 30 and 0 < rep["ssim"] <= 1
    assert rep["lpips"] is None  # no LPIPS weights given
    assert set(rep) >= {"eps", "steps", "seconds", "linf", "l2", "psnr", "ssim", "lpips", "encoders"}


def test_float_batch_in_float_batch_out(svd_encoder, fast):
    x = torch.rand(2, 3, 24, 40)
    adv, reps = protect(x, svd_encoder, eps=2 / 255, steps=3, **fast)
    assert isinstance(adv, torch.Tensor) and adv.shape == x.shape and adv.dtype == torch.float32
    assert (adv - x).abs().max() <= 2 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert isinstance(reps, list) and len(reps) == 2


def test_seeded_runs_are_reproducible(svd_encoder, fast):
    img = random_image(24, 32, 4)
    a, _ = protect(img, svd_encoder, steps=3, seed=5, **fast)
    b, _ = protect(img, svd_encoder, steps=3, seed=5, **fast)
    c, _ = protect(img, svd_encoder, steps=3, seed=6, **fast)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("schedule", ["adam", "momentum", "sign"])
def test_every_schedule_and_eot_stay_in_the_ball(svd_encoder, schedule, fast):
    img = random_image(24, 32, 5)
    out, rep = protect(img, svd_encoder, steps=4, schedule=schedule, eot=ALL_EOT, **fast)
    assert rep["schedule"] == schedule
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 4


@pytest.mark.parametrize("name", sorted(EOT_TRANSFORMS))
def test_each_eot_transform_is_used_and_stays_in_the_ball(svd_encoder, fast, monkeypatch, name):
    calls = []
    real = EOT_TRANSFORMS[name]
    monkeypatch.setitem(EOT_TRANSFORMS, name, lambda x, gen: calls.append(1) or real(x, gen))
    img = random_image(24, 32, 6)
    out, rep = protect(img, svd_encoder, steps=6, eot=name, **fast)
    assert calls  # the transform was drawn in some steps, not only the identity
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 4 and 0 < rep["linf"] <= 4 / 255
    assert all(np.isfinite(c["cos_after"]) for c in rep["encoders"].values())


@pytest.mark.parametrize("name", sorted(EOT_TRANSFORMS))
def test_eot_transforms_are_drawn_from_the_generator_and_pass_a_gradient(name):
    x = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    gen = torch.Generator().manual_seed(7)
    first, second = EOT_TRANSFORMS[name](x, gen), EOT_TRANSFORMS[name](x, gen)
    again = EOT_TRANSFORMS[name](x, torch.Generator().manual_seed(7))
    assert first.shape == x.shape and torch.equal(first, again)  # the same seed, the same draw
    if name in ("blur", "noise"):
        assert not torch.equal(first, second)  # the generator moved on: the next step draws anew
    grad, = torch.autograd.grad((first * torch.linspace(-1, 1, first.numel()).view_as(first)).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_blur_is_the_blur_purification():
    """Within one 8-bit level of cv2.GaussianBlur on 8-bit images (cv2 rounds its fixed-point sums)."""
    import cv2

    for h, w in ((24, 32), (33, 51), (5, 7)):
        img = random_image(h, w, 2)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        for sigma in (0.5, 1.0, 1.5):
            ours = (gaussian_blur(x, sigma) * 255).round()[0].permute(1, 2, 0).numpy().astype(int)
            diff = np.abs(ours - cv2.GaussianBlur(img, (0, 0), sigmaX=sigma).astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 0.1, (h, w, sigma)


def test_noise_is_8_bit_noise_of_a_sigma_around_the_purifications():
    x = (0.2 + 0.6 * torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    sigmas = []
    for seed in range(8):
        out = EOT_TRANSFORMS["noise"](x, torch.Generator().manual_seed(seed))
        assert out.min() >= 0 and out.max() <= 1
        assert torch.allclose(out * 255, (out * 255).round(), atol=1e-3)  # 8-bit values, as saved
        sigmas.append(float((out - x).detach().std()))
        grad, = torch.autograd.grad(out.sum(), x)
        assert torch.equal(grad, torch.ones_like(x))  # clip and rounding pass it straight through
    assert 0.009 < min(sigmas) and max(sigmas) < 0.032 and max(sigmas) - min(sigmas) > 0.003, sigmas


def test_bad_arguments_are_refused(svd_encoder, fast):
    img = random_image(16, 16)
    for eps in ("5/0", "-1", "2", "0", "abc"):
        with pytest.raises(InputError):
            protect(img, svd_encoder, eps=eps, steps=2, **fast)
    with pytest.raises(InputError, match="steps must be >= 1"):
        protect(img, svd_encoder, steps=0, **fast)
    with pytest.raises(InputError, match="below one 8-bit level"):
        protect(img, svd_encoder, eps=0.5 / 255, steps=1, **fast)
    with pytest.raises(InputError, match="uint8"):
        protect(img.astype(np.float32), svd_encoder, steps=1, **fast)
    with pytest.raises(InputError, match="unknown EOT"):
        protect(img, svd_encoder, steps=1, eot="rotate", **fast)
    with pytest.raises(Exception, match="did you mean 'steps'"):
        protect(img, svd_encoder, stpes=3, **fast)


def test_quantize_to_ball_bounds_the_saved_image():
    orig = torch.tensor([[[[0, 10, 255, 128]]]], dtype=torch.uint8)
    adv = torch.tensor([[[[0.1, 0.0, 1.0, 0.52]]]])  # far outside the ball on purpose
    q = quantize_to_ball(adv, orig, 4 / 255)
    assert q.tolist() == [[[[4, 6, 255, 132]]]]


def test_attack_class_torchattacks_style(svd_encoder):
    steps = []
    attack = EmbeddingPGD(svd_encoder, eps=4 / 255, steps=3, callback=lambda t, loss: steps.append(t))
    x = torch.rand(1, 3, 16, 24)
    adv = attack(x, torch.rand(1, 3, 8, 8))
    assert steps == [0, 1, 2] and adv.shape == x.shape
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6


def test_helpers():
    assert parse_eot("jpeg, resize,jpeg") == ("jpeg", "resize")
    assert parse_eot(ALL_EOT) == ("jpeg", "resize", "blur", "noise")
    with pytest.raises(InputError, match="unknown EOT transform 'upscale'; known: jpeg, resize, blur, noise"):
        parse_eot("blur,upscale")
    assert match_size(torch.rand(1, 3, 5, 7), torch.rand(3, 3, 10, 12)).shape == (3, 3, 10, 12)
    opts = ProtectOptions.from_config({"eps": "2/255", "steps": "7", "step_size": "1/255", "eot": ["jpeg"]})
    assert opts.eps == pytest.approx(2 / 255) and opts.steps == 7 and opts.step_size == pytest.approx(1 / 255)


def test_bad_momentum_and_encoder_weights_are_input_errors():
    assert ProtectOptions.from_config({"schedule": "momentum", "momentum": 1}).momentum == 1.0  # MI-FGSM's mu
    assert ProtectOptions.from_config({"encoder_weights": {"clip": "1/2"}}).encoder_weights == {"clip": 0.5}
    for cfg, words in (({"schedule": "adam", "momentum": 1}, r"momentum must be in \[0, 1\)"),
                       ({"momentum": -0.5}, "momentum"),
                       ({"encoder_weights": {"clip": "x"}}, "encoder weight of clip"),
                       ({"encoder_weights": [1.0]}, "encoder_weights must map")):
        with pytest.raises(InputError, match=words):
            ProtectOptions.from_config(cfg)


def test_lpips_term_is_a_penalty(svd_encoder, fast, tmp_path):
    """With LPIPS weights the report has a number, and a heavy penalty keeps the image closer."""
    pytest.importorskip("lpips")
    import torchvision

    from mmvgm.attacks.quality import load_lpips

    torch.manual_seed(0)
    feats = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items()
             if k.startswith("features.")}
    torch.save(feats, tmp_path / "alex.pth")
    lp, note = load_lpips(tmp_path / "alex.pth")
    assert lp is not None and note is None
    img = random_image(32, 32, 7)
    _, free = protect(img, svd_encoder, steps=6, lpips=lp, lpips_weight=0.0, **fast)
    _, held = protect(img, svd_encoder, steps=6, lpips=lp, lpips_weight=1000.0, **fast)
    assert free["lpips"] is not None and held["lpips"] is not None
    assert held["lpips"] < free["lpips"]


def test_torchattacks_base_only_when_installed():
    import importlib.util

    if importlib.util.find_spec("torchattacks") is None:
        assert EmbeddingPGD.__mro__[1] is object  # the core path needs no optional extra
    else:
        from torchattacks.attack import Attack

        assert issubclass(EmbeddingPGD, Attack)


def test_eps_from_the_config_unless_given(svd_encoder, tmp_path):
    cfg = tmp_path / "eps2.yaml"
    cfg.write_text("base: default\neps: 2/255\nsteps: 2\nencoder_options:\n  vae_max_side: 64\n")
    img = random_image(16, 16, 7)
    out, rep = protect(img, svd_encoder, config=str(cfg))
    assert rep["eps"] == pytest.approx(2 / 255) and rep["steps"] == 2
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 2
    assert protect(img, svd_encoder, eps="3/255", config=str(cfg))[1]["eps"] == pytest.approx(3 / 255)


class _BatchInvariantToy(ImageEncoder):
    """Per-image arithmetic only (no BLAS or oneDNN kernel that sums in a batch-size dependent
    order), with noise like SVD's: what a batch changes here is the attack's own doing."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0)))
        self.weights = {"toy": 1.0}

    def encode(self, x):
        x = resize(x, (16, 16))
        if self.stochastic:
            x = x + 0.05 * torch.randn_like(x)
        return {"toy": (torch.sin(6 * x) * self.w).reshape(x.shape[0], 3, 4, 4, 4, 4).mean((3, 5))}


@pytest.mark.parametrize("eot", [None, "jpeg,resize", ALL_EOT])
def test_a_batch_is_exactly_each_image_alone_when_the_encoder_is_batch_invariant(eot):
    enc = _BatchInvariantToy().eval().requires_grad_(False)
    x = torch.rand(3, 3, 24, 32, generator=torch.Generator().manual_seed(1))
    adv, reports = protect(x, enc, steps=12, eot=eot, seed=3)
    for i in range(3):
        alone, report = protect(x[i:i + 1], enc, steps=12, eot=eot, seed=3)
        assert torch.equal(alone, adv[i:i + 1])  # start, EOT draws and encoder noise are the image's own
        assert report["encoders"] == reports[i]["encoders"]


@pytest.mark.parametrize("eot", [None, ALL_EOT])
def test_a_batch_of_same_size_images_gives_each_what_it_gives_alone(svd_encoder, fast, eot):
    """The tiny SVD encoder's batched kernels round differently from single-image ones (about
    1e-6); that is all a batch changes. Its bound: no saved pixel more than one level off, and
    almost all identical (0 of 3 x 1344 differed when measured)."""
    imgs = [random_image(24, 32, s) for s in range(3)]
    outs, reports = protect(imgs, svd_encoder, eps="4/255", eot=eot, **fast)
    assert isinstance(outs, list) and len(outs) == len(reports) == 3
    for img, out, rep in zip(imgs, outs, reports):
        alone, rep_alone = protect(img, svd_encoder, eps="4/255", eot=eot, **fast)
        diff = np.abs(alone.astype(int) - out.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3
        assert np.abs(out.astype(int) - img.astype(int)).max() <= 4 and rep["linf"] <= 4 / 255
        for k, c in rep["encoders"].items():
            assert c["cos_after"] == pytest.approx(rep_alone["encoders"][k]["cos_after"], abs=1e-4)


def test_a_list_must_be_arrays_of_one_size(svd_encoder, fast):
    with pytest.raises(InputError, match="one size, got 32x24, 24x32"):
        protect([random_image(24, 32), random_image(32, 24)], svd_encoder, steps=1, **fast)
    with pytest.raises(InputError, match="no images"):
        protect([], svd_encoder, steps=1, **fast)
    with pytest.raises(InputError, match="uint8"):
        protect([random_image(8, 8), torch.rand(3, 8, 8)], svd_encoder, steps=1, **fast)


def test_per_image_random_draws_each_slice_from_its_generator():
    like = torch.zeros(2, 3, 4)
    with PerImageRandom([torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)]) as mode:
        both = torch.randn_like(like)
        other = torch.randn_like(torch.zeros(3, 3))  # not batch-shaped: the global generator
    alone = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(both[0], both[1]) and torch.equal(both[:1], alone)
    assert mode.draws == 1 and other.shape == (3, 3)
