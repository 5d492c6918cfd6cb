import pytest

from mmvgm.attacks.budget import parse_bool, parse_eps, parse_fraction, parse_positive_int
from mmvgm.errors import InputError


@pytest.mark.parametrize("text, value", [("4/255", 4 / 255), ("2/255", 2 / 255), ("0.0157", 0.0157),
                                         (" 8/255 ", 8 / 255), ("1", 1.0), (0.5, 0.5), ("1e-2", 0.01)])
def test_parse_eps_accepts(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("text, words", [("5/0", "zero"), ("-1", "> 0"), ("0", "> 0"), ("2", "2/255"),
                                         ("abc", "not a number"), ("", "not a number"), ("nan", "finite"),
                                         ("4//255", "not a number"), (True, "number")])
def test_parse_eps_rejects_with_a_clear_message(text, words):
    with pytest.raises(InputError, match=words):
        parse_eps(text)


def test_other_parsers():
    assert parse_fraction("1/2") == 0.5
    assert parse_bool("yes") is True and parse_bool("off") is False
    with pytest.raises(InputError):
        parse_bool("maybe")
    assert parse_positive_int("10", "steps") == 10
    assert parse_positive_int("0", "seed", allow_zero=True) == 0
    for bad in ("0", "-3", "2.5", "x"):
        with pytest.raises(InputError):
            parse_positive_int(bad, "steps")
