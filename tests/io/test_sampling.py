import numpy as np
import pytest

from mmvgm.errors import InputError
from mmvgm.io.sampling import Sampling, StartPastEndError, parse_sampling


@pytest.mark.parametrize("spec, expected", [
    ("consecutive", Sampling("consecutive")),
    ("uniform", Sampling("uniform")),
    (" Uniform ", Sampling("uniform")),
    ("stride:3", Sampling("stride", 3)),
])
def test_parse(spec, expected):
    assert parse_sampling(spec) == expected
    assert parse_sampling(expected) is expected
    assert parse_sampling(str(expected)) == expected


@pytest.mark.parametrize("spec", ["random", "stride", "stride:0", "stride:-2", "stride:x",
                                  "uniform:2", ""])
def test_parse_refuses(spec):
    with pytest.raises(InputError):
        parse_sampling(spec)


@pytest.mark.parametrize("spec, total, n, start, indices, padded", [
    ("consecutive", 10, 4, 0, [0, 1, 2, 3], 0),
    ("consecutive", 10, 4, 8, [8, 9, 9, 9], 2),
    ("uniform", 10, 4, 0, [0, 3, 6, 9], 0),
    ("uniform", 100, 3, 0, [0, 50, 99], 0),
    ("uniform", 10, 10, 0, list(range(10)), 0),
    ("uniform", 3, 5, 0, [0, 1, 2, 2, 2], 2),
    ("uniform", 10, 3, 4, [4, 6, 9], 0),
    ("uniform", 1, 4, 0, [0, 0, 0, 0], 3),
    ("stride:2", 10, 3, 1, [1, 3, 5], 0),
    ("stride:4", 10, 4, 0, [0, 4, 8, 8], 1),
    ("stride:100", 10, 2, 0, [0, 0], 1),
])
def test_plan(spec, total, n, start, indices, padded):
    got, got_padded = parse_sampling(spec).plan(total, n, start)
    assert got.tolist() == indices and got_padded == padded
    assert got.dtype == np.int64


def test_uniform_indices_are_distinct_and_cover_the_video():
    for total in range(16, 200, 7):
        got, padded = parse_sampling("uniform").plan(total, 16)
        assert padded == 0 and len(set(got.tolist())) == 16
        assert got[0] == 0 and got[-1] == total - 1 and (np.diff(got) > 0).all()


def test_start_past_end():
    with pytest.raises(StartPastEndError, match="past the end"):
        parse_sampling("consecutive").plan(10, 4, 10)
    assert issubclass(StartPastEndError, InputError)


def test_needs_total():
    assert parse_sampling("uniform").needs_total
    assert not parse_sampling("consecutive").needs_total


def test_plans_are_numpys_sampling():
    """The plans in Python ints are the arrays numpy gave: np.round(np.linspace) for uniform,
    arange for the others, cut at the end and padded with the last real frame."""
    def numpy_plan(kind, stride, total, n, start):
        if kind == "uniform":
            wanted = (start + np.arange(n) if total - start <= n
                      else np.round(np.linspace(start, total - 1, n)).astype(np.int64))
        else:
            wanted = start + stride * np.arange(n)
        real = wanted[wanted < total]
        return np.concatenate([real, np.full(n - len(real), real[-1])]).tolist(), n - len(real)

    rng = np.random.default_rng(0)
    cases = [(total, n, start) for total in range(1, 90) for n in range(1, 40)
             for start in {0, total // 2, total - 1}]
    cases += [(int(t), int(n), int(s * t)) for t, n, s in
              zip(rng.integers(1, 10 ** 9, 500), rng.integers(1, 300, 500), rng.random(500))]
    for spec, kind, stride in (("uniform", "uniform", 1), ("consecutive", "", 1), ("stride:3", "", 3)):
        sampling = parse_sampling(spec)
        for total, n, start in cases:
            got, padded = sampling.plan(total, n, start)
            expected = numpy_plan(kind, stride, total, n, start)
            assert (got.tolist(), padded) == expected, (spec, total, n, start)
