import pytest
import torch

from mmvgm.errors import InputError
from mmvgm.runtime import autocast_dtype, package_versions, pick_device, seed_everything


def test_auto_device_matches_cuda_availability():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert autocast_dtype(torch.device("cpu")) is None


def test_bad_device_names_are_input_errors():
    with pytest.raises(InputError):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            pick_device("cuda")


def test_versions_record_the_result_deciding_packages():
    versions = package_versions()
    assert {"python", "torch", "numpy"} <= set(versions)


def test_seeding_is_reproducible():
    seed_everything(7)
    a = torch.rand(3)
    seed_everything(7)
    assert torch.equal(a, torch.rand(3))


def test_cuda_index_past_the_visible_devices_is_an_input_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    assert pick_device("cuda") == torch.device("cuda")
    with pytest.raises(InputError, match=r"'cuda:2' requested but only 2 CUDA device\(s\) are visible"):
        pick_device("cuda:2")


def test_worker_start_method_comes_from_the_environment(monkeypatch):
    from mmvgm.runtime import WORKER_START_ENV, worker_start_method

    monkeypatch.delenv(WORKER_START_ENV, raising=False)
    assert worker_start_method() is None  # Python's default
    monkeypatch.setenv(WORKER_START_ENV, " ForkServer ")
    assert worker_start_method() == "forkserver"
    monkeypatch.setenv(WORKER_START_ENV, "thread")
    with pytest.raises(InputError, match="use one of fork, forkserver, spawn"):
        worker_start_method()


@pytest.mark.parametrize("cores, env, expected", [
    (2, {}, 2),                              # the 2-core default is kept
    (16, {}, 14),                            # a GPU machine: 2 cores for the model's process
    (128, {}, 16),                           # capped
    (16, {"LOCAL_WORLD_SIZE": "4"}, 2),      # four ranks share 16 cores
    (64, {"LOCAL_WORLD_SIZE": "2"}, 16),
    (16, {"LOCAL_WORLD_SIZE": "junk"}, 14),
])
def test_default_decode_workers_follow_the_cores_this_process_may_use(monkeypatch, cores, env, expected):
    import mmvgm.runtime.workers as workers

    monkeypatch.setattr(workers, "usable_cores", lambda: cores)
    assert workers.default_decode_workers(env) == expected


def test_torchcodec_pays_only_for_many_files_per_worker():
    from mmvgm.runtime.workers import TORCHCODEC_MIN_FILES_PER_WORKER as MIN, torchcodec_pays

    assert torchcodec_pays(None, 4)  # long-lived work: a service, training
    assert not torchcodec_pays(2 * MIN - 1, 2) and torchcodec_pays(2 * MIN, 2)
    assert not torchcodec_pays(MIN - 1, 0) and torchcodec_pays(MIN, 0)  # in-process: counted as one
    assert not torchcodec_pays(0, 1)
