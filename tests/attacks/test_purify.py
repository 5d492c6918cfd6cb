import numpy as np
import pytest

from mmvgm.attacks import protect
from mmvgm.attacks.purify import evaluate_protection, parse_purify
from mmvgm.errors import InputError
from tests.attacks.conftest import random_image


def test_parse_purify():
    assert [str(p) for p in parse_purify("jpeg:75,jpeg:50,resize:0.5,blur:1")] == \
        ["none", "jpeg:75", "jpeg:50", "resize:0.5", "blur:1"]
    for bad, words in (("jpeg", "needs a quality"), ("jpeg:0", "1-100"), ("resize:2", r"\(0, 1\)"),
                       ("rotate:3", "unknown purification"), ("blur:x", "not a number")):
        with pytest.raises(InputError, match=words):
            parse_purify(bad)


def test_purifiers_keep_the_size():
    img = random_image(33, 51)
    for p in parse_purify("jpeg:50,resize:0.5,blur:2")[1:]:  # [0] is "none"
        out = p(img)
        assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)


def test_survival_table(svd_encoder, fast_config):
    img, tgt = random_image(32, 40, 1), random_image(32, 40, 2)
    prot, _ = protect(img, svd_encoder, eps=8 / 255, steps=8, target=tgt, config=str(fast_config))
    res = evaluate_protection(img, prot, svd_encoder, target=tgt, purify="jpeg:75,blur:1")
    assert res["mode"] == "directed" and [r["purification"] for r in res["results"]] == ["none", "jpeg:75", "blur:1"]
    none = res["results"][0]["encoders"]
    for name in ("clip", "vae"):
        assert none[name]["effect"] > 0 and none[name]["survival"] == 1.0
    for row in res["results"][1:]:
        assert set(row["encoders"]["clip"]) == {"cos_protected", "cos_original", "effect", "survival"}
    with pytest.raises(InputError, match="differ in size"):
        evaluate_protection(img, prot[:-1], svd_encoder)
