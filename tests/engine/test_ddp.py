"""Two CPU processes (gloo DDP): a rank whose batch is all unreadable files must not hang the other."""
import multiprocessing
import os
import socket

from mmvgm.checkpoint.files import read_meta
from tests.engine.synthetic import make_dataset

TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, cfg: dict) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"})
    from mmvgm.engine.train import train

    train(cfg)


def test_a_rank_with_only_unreadable_files_does_not_hang_the_others(tmp_path):
    root = make_dataset(tmp_path / "data", per_class=3, classes=("real", "lavie"))
    for name in ("bad_train.mp4", "bad_val.mp4"):
        (root / "real" / name).write_bytes(b"not a video")
    # batch 1 per process: the step (and validation batch) holding a bad file is empty on one rank only
    rows = [("real/real_00.mp4", "train"), ("real/real_01.mp4", "train"), ("lavie/lavie_00.mp4", "train"),
            ("real/bad_train.mp4", "train"), ("real/real_02.mp4", "val"), ("lavie/lavie_01.mp4", "val"),
            ("real/bad_val.mp4", "val"), ("lavie/lavie_02.mp4", "test")]
    manifest = root / "manifest.csv"
    manifest.write_text("path,label,split\n" + "".join(f"{p},{p.split('/')[0]},{s}\n" for p, s in rows))
    out = tmp_path / "run"
    cfg = {"backbone": "videomae_tiny", "task": "detect", "data": str(manifest), "epochs": 1, "batch_size": 1,
           "workers": 0, "out": str(out), "progress": False, "cpu": True}
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(rank, port, cfg)) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT_S)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    assert not hung, "a DDP rank hung"
    assert [p.exitcode for p in procs] == [0, 0]
    assert (out / "best" / "model.safetensors").is_file()
    # validation gathered both ranks once each: the 2 readable videos, not the copy padding rank 1
    assert read_meta(out / "best").val_metrics["n"] == 2
