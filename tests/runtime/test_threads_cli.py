"""``--threads`` of scan, trace, eval and train arrives in the thread policy, and takes effect."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import mmvgm.runtime.threads as threads_module
from mmvgm.cli import cli
from tests.engine.synthetic import make_dataset, tiny_config, write_labels
from tests.inference_helpers import make_checkpoint, make_videos


class Stop(Exception):
    """Raised by the spy to end a command once the policy has been asked."""


@pytest.fixture()
def resolved(monkeypatch):
    """Every call of the policy resolver, as (device type, workers, threads, training?); the
    real policy is returned unless ``resolved.stop`` is set."""
    calls, real = [], threads_module.resolve_threads

    def spy(device, workers, threads=None, **kwargs):
        calls.append((device.type, workers, threads, kwargs.get("training") is not None))
        if spy.stop:
            raise Stop
        return real(device, workers, threads, **kwargs)

    spy.stop, spy.calls = False, calls
    monkeypatch.setattr(threads_module, "resolve_threads", spy)
    monkeypatch.delenv("MMVGM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield spy
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt", "joint", sources=("lavie", "show-1"))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"MMVGM_CHECKPOINT": None})


def test_scan_threads_reach_the_policy_and_the_scoring_loop(resolved, ckpt, tmp_path, monkeypatch):
    from mmvgm.predict.predictor import Predictor

    seen, submit = [], Predictor.submit
    monkeypatch.setattr(Predictor, "submit", lambda self, pixels: (seen.append(torch.get_num_threads()),
                                                                   submit(self, pixels))[1])
    make_videos(tmp_path / "videos", 3)
    result = run("scan", tmp_path / "videos", "-c", ckpt, "--out", tmp_path / "r.jsonl", "-j", "0", "-q",
                 "--device", "cpu", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert resolved.calls == [("cpu", 0, 1, False)]
    assert seen and set(seen) == {1}  # scored on the fixed count
    assert torch.get_num_threads() == 2  # and the caller's count is back


def test_trace_threads_reach_the_policy(resolved, ckpt, tmp_path):
    video = make_videos(tmp_path, 1)[0]
    result = run("trace", video, "-c", ckpt, "--json", "--device", "cpu", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert resolved.calls == [("cpu", 0, 1, False)]
    assert torch.get_num_threads() == 2


def test_eval_threads_reach_the_policy(resolved, ckpt, tmp_path):
    resolved.stop = True
    data = make_dataset(tmp_path / "data", per_class=2)
    result = run("eval", "-c", ckpt, "-d", data, "--split", "all", "--workers", "0", "--device", "cpu",
                 "--no-progress", "--threads", "3")
    assert "unexpected Stop" in result.output, result.output  # the CLI reports what stopped it
    assert resolved.calls == [("cpu", 0, 3, False)]


def test_train_threads_reach_the_policy_through_the_config(resolved, tmp_path):
    resolved.stop = True
    data = make_dataset(tmp_path / "data", per_class=4)
    labels = write_labels(tmp_path / "two.yaml")
    cfg = tiny_config(data, tmp_path / "run", labels)
    result = run("train", "--backbone", cfg["backbone"], "--task", cfg["task"], "--data", data, "--labels", labels,
                 "--out", cfg["out"], "--workers", "0", "--cpu", "--no-progress", "--threads", "3")
    assert "unexpected Stop" in result.output, result.output  # the CLI reports what stopped it
    assert resolved.calls == [("cpu", 0, 3, True)]
    assert torch.get_num_threads() == 2  # restored after the failed run


def test_train_config_refuses_a_bad_thread_count(tmp_path):
    from mmvgm.engine.train import train
    from mmvgm.errors import ConfigError

    data = make_dataset(tmp_path / "data", per_class=1)
    with pytest.raises(ConfigError, match="'threads' must be a positive integer"):
        train(tiny_config(data, tmp_path / "run", write_labels(tmp_path / "two.yaml"), threads=0))
