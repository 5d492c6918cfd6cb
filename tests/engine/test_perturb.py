import numpy as np
import pytest

from mmvgm.engine.perturb import list_perturbations, parse_perturbations
from mmvgm.errors import InputError
from tests.media import make_frames


@pytest.fixture(scope="module")
def clip():
    return make_frames(16, 33, 47, seed=3)


def test_each_perturbation_changes_the_clip_as_specified(clip):
    jpeg, h264, resize, fps = parse_perturbations("jpeg:20,h264:crf35,resize:0.5,fps:half")
    for p in (jpeg, h264):
        out = p(clip[:8])
        assert out.shape == (8, 33, 47, 3) and out.dtype == np.uint8
        diff = np.abs(out.astype(int) - clip[:8]).mean()
        assert 0.5 < diff < 40  # lossy but still the same picture
    assert resize(clip[:8]).shape == (8, 16, 24, 3)
    assert fps.frames_needed(8) == 16
    np.testing.assert_array_equal(fps(clip), clip[::2])


def test_chain_and_registry(clip):
    (chain,) = parse_perturbations("fps:0.5+jpeg:90")
    assert chain.frames_needed(4) == 8 and chain(clip[:8]).shape == (4, 33, 47, 3)
    assert {"jpeg", "h264", "resize", "fps"} <= set(list_perturbations())


@pytest.mark.parametrize("spec", ["", "blur:3", "jpeg", "jpeg:0", "jpeg:abc", "h264:99", "fps:2"])
def test_bad_specs_are_input_errors(spec):
    with pytest.raises(InputError):
        parse_perturbations(spec)
