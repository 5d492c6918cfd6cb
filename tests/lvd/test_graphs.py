"""CUDA-graph replay of the conditioned detector (lvd.graphs): same answers as eager calls."""
import pytest
import torch

from mmvgm.lvd.graphs import GraphCache
from mmvgm.lvd.train import train_lvd
from tests.lvd.test_train import make_store

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_on_cpu_the_function_is_simply_called():
    calls = []

    def fn(x, s):
        calls.append(1)
        return x * 2

    cache = GraphCache()
    x = torch.ones(2, 3)
    assert torch.equal(cache(fn, x, torch.zeros(2)), x * 2) and calls == [1] and not cache.graphs


@cuda
def test_replay_matches_eager_and_follows_new_inputs(tmp_path):
    store = make_store(tmp_path / "store")
    model, _ = train_lvd(store, tmp_path / "m", mode="conditioned", epochs=1, device="cuda", progress=False)
    from mmvgm.lvd.store import TrajectoryStore

    s = TrajectoryStore(store)
    ids = model.cfg["split"]["test"][:2]
    for step in (0, 2, 1):
        x = torch.stack([s.load(v, [step])[0] for v in ids]).cuda()
        model.use_cuda_graphs = False
        eager = model.probs(x, step)
        model.use_cuda_graphs = True
        graphed = model.probs(x, step)
        assert torch.allclose(graphed, eager, atol=2e-2), (step, graphed, eager)
    assert len(model._graphs.graphs) == 1  # one shape: captured once, replayed for every step
    one = model.probs(x[:1], 1)  # a new batch size: a second capture
    assert len(model._graphs.graphs) == 2 and one.shape == (1, len(model.categories))


@cuda
def test_a_capture_failure_falls_back_to_eager_calls():
    def syncs(x, s):  # .item() synchronises with the host: not capturable
        return x * float(s.sum().item())

    cache = GraphCache()
    x = torch.ones(2, device="cuda")
    with pytest.warns(UserWarning, match="CUDA graph capture failed"):
        out = cache(syncs, x, torch.full((2,), 3, device="cuda"))
    assert torch.equal(out, x * 6) and cache.disabled
