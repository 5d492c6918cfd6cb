import itertools

import pytest

from mmvgm.errors import InputError
from mmvgm.lvd.rule import (Decision, SequentialRule, apply_rule, compute_saved, decide, parse_lambda,
                            required_flags, sequential_rule, steps_run)


def test_exact_arithmetic_no_float_surprise():
    # In floats 25 * 0.28 is 7.000000000000001, so 7 flags would wrongly fail the rule.
    assert 25 * 0.28 > 7
    assert apply_rule([1] * 7 + [0] * 18, eta=25, lam=0.28) is True
    assert apply_rule([1] * 6 + [0] * 19, eta=25, lam=0.28) is False
    assert apply_rule([1] * 28 + [0] * 22, eta=50, lam=0.56) is True
    assert apply_rule([1] * 7 + [0] * 3, eta=10, lam=0.7) is True
    assert apply_rule([1] * 6 + [0] * 4, eta=10, lam=0.7) is False
    assert required_flags(10, 0.7) == 7
    assert required_flags(20, 0.6) == 12
    assert required_flags(3, "1/3") == 1
    assert required_flags(7, 0.5) == 4  # 3.5 -> 4 flags


def test_research_default_rule_uses_only_first_eta_steps():
    flags = [1] * 11 + [0] * 9 + [1] * 30  # 11 of the first 20: safe, despite later flags
    assert apply_rule(flags) is False
    flags[11] = 1
    assert apply_rule(flags) is True


@pytest.mark.parametrize("lam", ["0.1", "0.25", "0.5", "0.6", "0.7", "1"])
def test_sequential_agrees_with_batch_rule_exhaustively(lam):
    eta = 8
    for bits in itertools.product([0, 1], repeat=eta):
        flags = list(bits) + [0, 1]
        batch = apply_rule(flags, eta, lam)
        seq = sequential_rule(flags, eta, lam)
        assert seq.unsafe == batch
        assert 1 <= seq.step <= eta
        # the decision really cannot change after seq.step, and could before it
        prefix = flags[:seq.step]
        for tail in itertools.product([0, 1], repeat=eta - seq.step):
            assert apply_rule(prefix + list(tail), eta, lam) == batch


def test_sequential_stops_as_soon_as_decided():
    # eta 20, lambda 0.6 -> 12 flags needed
    assert sequential_rule([1] * 50, 20, 0.6) == Decision(True, 12)
    # 9 misses in a row make 12 of 20 impossible (11 steps left)
    assert sequential_rule([0] * 50, 20, 0.6) == Decision(False, 9)
    live = SequentialRule(20, 0.6)
    assert [live.update(1) for _ in range(11)] == [None] * 11
    assert live.update(1) == Decision(True, 12)
    assert live.update(0) == Decision(True, 12)  # sticky


def test_steps_run_and_compute_saved_hand_table():
    total = 50
    table = {
        "a": [1] * 50,               # unsafe, sequential at 12, batch at 20
        "b": [0] * 50,               # safe: runs 50
        "c": [0, 1] * 25,            # 10 of the first 20: safe
        "d": [1, 1, 0] * 17,         # unsafe, 12th flag at step 17 (index 16)
    }
    seq = {k: decide(v, 20, 0.6, sequential=True) for k, v in table.items()}
    assert seq["d"] == Decision(True, 17)
    assert seq["c"].unsafe is False
    assert [steps_run(seq[k], total) for k in "abcd"] == [12, 50, 50, 17]
    assert compute_saved(seq.values(), total) == pytest.approx(1 - (12 + 50 + 50 + 17) / 200)
    batch = {k: decide(v, 20, 0.6) for k, v in table.items()}
    assert [steps_run(batch[k], total) for k in "abcd"] == [20, 50, 50, 20]
    assert compute_saved(batch.values(), total) == pytest.approx(1 - 140 / 200)
    assert compute_saved([], total) == 0.0


@pytest.mark.parametrize("lam", [0, -0.1, 1.01, "abc", "1/0"])
def test_lambda_outside_range_is_refused(lam):
    with pytest.raises(InputError, match="lambda"):
        parse_lambda(lam)


def test_eta_larger_than_steps_or_invalid_is_refused():
    with pytest.raises(InputError, match="larger than the number of denoising steps"):
        apply_rule([1] * 10, eta=20)
    with pytest.raises(InputError, match="eta"):
        apply_rule([1] * 10, eta=0)
    with pytest.raises(InputError, match="eta"):
        sequential_rule([1] * 10, eta=11)
