"""The libraries' own loading bars stay off while mmvgm loads a model (``library_bars_off``)."""
import importlib

import pytest

from mmvgm.progress import LIBRARY_BAR_SWITCHES, library_bars_off


@pytest.fixture
def switches():
    mods = [importlib.import_module(name) for name in LIBRARY_BAR_SWITCHES]
    before = [m.is_progress_bar_enabled() for m in mods]
    yield mods
    for mod, was in zip(mods, before):
        mod.enable_progress_bar() if was else mod.disable_progress_bar()


def test_bars_are_off_inside_and_back_on_after(switches):
    for mod in switches:
        mod.enable_progress_bar()
    with library_bars_off():
        assert [m.is_progress_bar_enabled() for m in switches] == [False, False]
    assert [m.is_progress_bar_enabled() for m in switches] == [True, True]


def test_bars_come_back_when_the_load_raises(switches):
    for mod in switches:
        mod.enable_progress_bar()
    with pytest.raises(ValueError), library_bars_off():
        raise ValueError("a bad folder")
    assert all(m.is_progress_bar_enabled() for m in switches)


def test_bars_the_user_turned_off_stay_off(switches):
    transformers_bars, diffusers_bars = switches
    transformers_bars.disable_progress_bar()
    diffusers_bars.enable_progress_bar()
    with library_bars_off():
        pass
    assert not transformers_bars.is_progress_bar_enabled()
    assert diffusers_bars.is_progress_bar_enabled()
