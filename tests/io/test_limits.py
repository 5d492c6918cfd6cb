import pytest

from mmvgm.errors import InputError, LimitError
from mmvgm.io import DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS, default_limits, read_clip, set_default_limits
from mmvgm.io.limits import check_frames, check_pixels
from tests.io.conftest import HEIGHT, N_FRAMES, WIDTH


def test_defaults_refuse_a_20000_square_frame_and_allow_8k():
    check_pixels(7680, 4320, DEFAULT_MAX_PIXELS)
    with pytest.raises(LimitError, match="20000x20000"):
        check_pixels(20000, 20000, DEFAULT_MAX_PIXELS)
    check_pixels(0, 0, 1)  # unknown size: decided on the first frame instead
    check_frames(DEFAULT_MAX_FRAMES, DEFAULT_MAX_FRAMES)
    with pytest.raises(LimitError, match="frame budget"):
        check_frames(DEFAULT_MAX_FRAMES + 1, DEFAULT_MAX_FRAMES)


def test_set_default_limits_applies_process_wide_and_restores(mp4):
    previous = set_default_limits(max_pixels=WIDTH * HEIGHT - 1)
    try:
        with pytest.raises(LimitError, match="pixel budget"):
            read_clip(mp4, 2)
        assert read_clip(mp4, 2, max_pixels=WIDTH * HEIGHT).shape[0] == 2  # kwargs win
        set_default_limits(max_pixels=previous["max_pixels"], max_frames=N_FRAMES - 1)
        with pytest.raises(LimitError, match="frame budget"):
            read_clip(mp4, 2)
    finally:
        set_default_limits(**previous)
    assert default_limits() == previous


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10"])
def test_budgets_must_be_positive_integers(mp4, bad):
    with pytest.raises(InputError):
        set_default_limits(max_pixels=bad)
    with pytest.raises(InputError):
        read_clip(mp4, 2, max_frames=bad)
