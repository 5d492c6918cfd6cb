"""The thread policy: every CPU thread count of mmvgm, decided in one place.

One :class:`ThreadPolicy`, resolved once per loop by :func:`resolve_threads` from the device,
the number of decoding workers, the environment and a CLI value, says:

* ``compute``: torch's threads in the loop that runs the model;
* ``worker_torch``: torch's threads in a decoding worker (:func:`decoding_worker_init`);
* ``worker_decoder`` / ``in_process_decoder``: the threads of one decoder (FFmpeg, OpenCV) in a
  worker and in the main process (:func:`decoder_threads`, which the readers call).

A loop applies it with ``with policy.loop() as loop:`` (:class:`ThreadLoop`), which puts the
previous count back on exit, also when the loop raises. No other module sets torch's threads.

What wins, first to last:

1. ``--threads N`` (``mmvgm scan``, ``trace``, ``eval``, ``train``; ``threads=N`` in the
   library; the ``threads`` key of a train config), then ``MMVGM_THREADS=N``: the compute
   threads are N, on any device, and nothing adapts them. An explicit count is an instruction.
2. ``OMP_NUM_THREADS`` set by the user: hands off; the count torch took from it stays.
3. The default, on a CPU loop fed by decoding workers (a GPU loop, or one without workers,
   keeps torch's count: there is nothing to share):

   * scanning (``Predictor.stream``) adapts to what the loop waits on. A slow model keeps the
     workers ahead, so it should have every core. A fast one leaves the loop waiting for
     decoded clips, and its compute threads, spinning on every core, slow the workers down
     further; a core is then left to each worker, and taken back once the loop is
     compute-bound again (:meth:`ThreadLoop.record`).
   * training decides once, before the first step, from counted work, never from timings
     (:func:`plan_cpu_split`). A thread count changes how sums are split and so their
     rounding; deciding from the config and the data alone keeps a CPU run bit-for-bit
     reproducible, ``--resume`` included. A small model, whose workers must decode a clip in
     about the time the model trains on it, leaves a core to each worker; a large one, whose
     workers are mostly idle, keeps every core.

Decoding workers run one torch thread and one decoder thread each: they already decode in
parallel with each other, and a decoder's default of a thread per core in every worker
oversubscribes the machine and starves the process feeding the model. ``MMVGM_DECODE_THREADS=N``
sets the decoder threads everywhere; in the main process a decoder otherwise keeps the
library's own choice, because there it decodes alone.

The measurements behind each choice, and the commands that reproduce them, are in
``benchmarks/README.md`` ("Thread policy").

This module imports torch only when a function needs it: ``mmvgm.io`` asks it for decoder
threads and must stay importable without torch.
"""
from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Tuple

from mmvgm.errors import InputError
from mmvgm.runtime.workers import usable_cores

if TYPE_CHECKING:
    import torch

THREADS_ENV = "MMVGM_THREADS"
DECODE_THREADS_ENV = "MMVGM_DECODE_THREADS"
#: Torch threads in a decoding worker: workers run side by side, one decode each; more threads
#: per worker would only fight the model and the other workers for the same cores.
WORKER_TORCH_THREADS = 1
#: Decoder threads in a decoding worker (same reason), and in the main process: 0, the
#: library's own choice, since there one decoder works alone.
WORKER_DECODER_THREADS = 1
IN_PROCESS_DECODER_THREADS = 0

#: Training's counted split weighs the model's work against the workers' decoding with these
#: per-core rates. They are rough, deliberately: only which side of ``SHARE_BELOW_CORES`` the
#: ratio falls on matters, and the two regimes lie far apart.
CPU_FLOPS_PER_CORE = 5e10  # FLOP/s of a training step on one core
DECODE_OPEN_S = 3e-3  # seconds to open a file and start decoding (H.264, one thread)
DECODE_S_PER_PIXEL = 1e-8  # seconds per source pixel decoded and resized (one thread)
#: Below this many cores of decoding load (with the model on every core), the workers get no
#: core of their own: reserving one would idle most of it.
SHARE_BELOW_CORES = 0.25
_PROBED_VIDEOS = 3


# ----------------------------------------------------------------------------- reading settings

def fixed_threads(threads: Optional[int] = None, env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """The compute threads fixed by ``threads`` (``--threads``), else by ``$MMVGM_THREADS``;
    ``None`` when neither is given. A count that is not a positive integer is an InputError."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InputError(f"threads must be a positive integer (got {threads!r})")
        return threads
    value = (os.environ if env is None else env).get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"{THREADS_ENV}={value!r}: give a positive number of threads")
    return int(value)


_IN_DECODING_WORKER = False


def in_decoding_worker() -> bool:
    """Whether this process is a decoding worker: one that ran :func:`decoding_worker_init`
    (a predictor's pool) or a DataLoader worker (torch is only looked at if already imported)."""
    if _IN_DECODING_WORKER:
        return True
    data = sys.modules.get("torch.utils.data")
    return data is not None and data.get_worker_info() is not None


def decoder_threads(env: Optional[Mapping[str, str]] = None, in_worker: Optional[bool] = None) -> int:
    """Threads one decoder may use: ``$MMVGM_DECODE_THREADS`` if it is a number, else
    ``WORKER_DECODER_THREADS`` in a decoding worker and ``IN_PROCESS_DECODER_THREADS`` (0, the
    library's choice) elsewhere. ``in_worker``: ``None`` asks :func:`in_decoding_worker`."""
    forced = (os.environ if env is None else env).get(DECODE_THREADS_ENV, "").strip()
    if forced.isdigit():
        return int(forced)
    worker = in_decoding_worker() if in_worker is None else in_worker
    return WORKER_DECODER_THREADS if worker else IN_PROCESS_DECODER_THREADS


def worker_torch_threads() -> int:
    """Torch threads of a decoding worker."""
    return WORKER_TORCH_THREADS


def decoding_worker_init(worker_id: int = 0) -> None:
    """Give this decoding worker its torch threads; usable as a DataLoader ``worker_init_fn``.

    Not ``cv2.setNumThreads``: in a forked worker it tears down the parent's OpenCV thread
    pool and can deadlock. The decoders get their threads from :func:`decoder_threads`."""
    global _IN_DECODING_WORKER
    _IN_DECODING_WORKER = True
    _set_torch_threads(worker_torch_threads())


def may_set_cpu_threads(device: "torch.device", workers: int, env: Optional[Mapping[str, str]] = None) -> bool:
    """Whether the default may choose the compute threads of a loop on ``device`` fed by
    ``workers`` decoding processes: only a CPU loop with workers, never over ``OMP_NUM_THREADS``."""
    env = os.environ if env is None else env
    return device.type == "cpu" and workers > 0 and not env.get("OMP_NUM_THREADS")


def threads_leaving_worker_cores(workers: int) -> int:
    """Compute threads that leave a core to each of ``workers`` decoding processes (at least 1)."""
    import torch

    return max(1, min(torch.get_num_threads(), usable_cores() - workers))


def _set_torch_threads(count: int) -> None:
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


# ----------------------------------------------------------------------------- training's counted split

@dataclass(frozen=True)
class CpuSplit:
    """The model's compute threads, and why, for the log and the run history."""

    threads: int
    reason: str


def step_flops_per_clip(model_cfg: Mapping[str, Any], input_shape: Tuple[int, ...]) -> Optional[float]:
    """Forward + backward FLOPs of one clip of ``input_shape`` (T, C, H, W), counted on the meta
    device (no memory, no compute; backward = 2x forward); ``None`` if it cannot be counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mmvgm.models import build_model

    cfg = copy.deepcopy(dict(model_cfg))
    if isinstance(cfg.get("backbone"), Mapping):
        cfg["backbone"] = {**cfg["backbone"], "weights": None}  # nothing to read onto the meta device
    try:
        with torch.device("meta"):
            model = build_model(cfg)
            clip = torch.empty(1, *input_shape)
        with FlopCounterMode(display=False) as counter:
            model(clip)
    except Exception:  # noqa: BLE001 - an uncountable model keeps the safe split
        return None
    return 3.0 * float(counter.get_total_flops())


def decoded_pixels_per_clip(paths: Sequence[str], num_frames: int, sampling: str) -> Optional[float]:
    """Source pixels decoded for one clip of the first probe-able video in ``paths`` (decoding
    runs from the first frame to the last sampled one); ``None`` if none of the first few probe."""
    from mmvgm.errors import MMVGMError
    from mmvgm.io import parse_sampling, probe

    for path in list(paths)[:_PROBED_VIDEOS]:
        try:
            info = probe(path)
            indices, _ = parse_sampling(sampling).plan(max(int(info.frames), 1), num_frames, 0)
        except (MMVGMError, ValueError):
            continue
        return float((int(indices.max()) + 1) * info.width * info.height)
    return None


def workers_need_cores(step_flops: float, decoded_pixels: float, cores: int) -> bool:
    """Whether decoding would take ``SHARE_BELOW_CORES`` or more of the machine while the model
    runs on all ``cores``."""
    model_s = step_flops / CPU_FLOPS_PER_CORE  # core-seconds per clip
    decode_s = DECODE_OPEN_S + decoded_pixels * DECODE_S_PER_PIXEL
    return cores * decode_s / max(model_s, 1e-12) >= SHARE_BELOW_CORES


def plan_cpu_split(device: "torch.device", workers: int, model_cfg: Mapping[str, Any],
                   input_shape: Tuple[int, ...], paths: Sequence[str], sampling: str,
                   env: Optional[Mapping[str, str]] = None) -> Optional[CpuSplit]:
    """Training's default compute threads for a CPU loop fed by ``workers`` decoding processes.

    ``None`` (threads left alone) off CPU, without workers, or when ``OMP_NUM_THREADS`` is set.
    When the work cannot be counted, each worker keeps a core of its own, as the small-model
    regime needs. That is the safe side: being wrong there costs the most.
    """
    import torch

    if not may_set_cpu_threads(device, workers, env):
        return None
    cores, threads = usable_cores(), torch.get_num_threads()
    reserved = threads_leaving_worker_cores(workers)
    flops = step_flops_per_clip(model_cfg, input_shape)
    pixels = decoded_pixels_per_clip(paths, input_shape[0], sampling)
    if flops is None or pixels is None:
        why = "the work per clip could not be counted"
    elif workers_need_cores(flops, pixels, cores):
        why = "decoding is a large share of the work"
    else:
        return CpuSplit(threads, f"CPU: the model keeps all {threads} thread(s); decoding is a small share "
                                 f"of the work ({flops / 1e9:.1f} GFLOP per clip against {pixels / 1e6:.1f} "
                                 "Mpixel decoded)")
    return CpuSplit(reserved, f"CPU: {reserved} compute thread(s), a core left to each of {workers} "
                              f"decoding worker(s): {why}")


# ----------------------------------------------------------------------------- the policy

@dataclass(frozen=True)
class TrainingWork:
    """What training's counted split counts: the model, one clip's shape (T, C, H, W), the
    training videos (the first few are probed) and their sampling."""

    model_cfg: Mapping[str, Any]
    input_shape: Tuple[int, ...]
    paths: Sequence[str] = field(default_factory=tuple)
    sampling: str = "consecutive"


@dataclass(frozen=True)
class ThreadPolicy:
    """Every thread count of one loop (see the module docstring); from :func:`resolve_threads`.

    ``compute``: torch's threads for the loop, ``None`` to keep the count it finds. With
    ``adaptive``, :meth:`ThreadLoop.record` moves the loop between that count and ``shared``
    (a core left to each decoding worker). ``reason``: one line for the log, empty when the
    policy leaves everything as it is.
    """

    compute: Optional[int] = None
    adaptive: bool = False
    shared: Optional[int] = None
    worker_torch: int = WORKER_TORCH_THREADS
    worker_decoder: int = WORKER_DECODER_THREADS
    in_process_decoder: int = IN_PROCESS_DECODER_THREADS
    reason: str = ""

    def loop(self, window: int = 4, margin: float = 2.0) -> "ThreadLoop":
        """A context manager that applies this policy for one loop (see :class:`ThreadLoop`)."""
        return ThreadLoop(self, window=window, margin=margin)


def resolve_threads(device: "torch.device", workers: int, threads: Optional[int] = None, *,
                    training: Optional[TrainingWork] = None,
                    env: Optional[Mapping[str, str]] = None) -> ThreadPolicy:
    """The thread policy of a loop on ``device`` fed by ``workers`` decoding processes.

    ``threads``: the CLI's ``--threads`` (fixes the compute threads, like ``$MMVGM_THREADS``).
    ``training``: the work of a training loop, which gets the counted split; without it the
    loop is a scan's, which adapts. ``env``: the environment to read (``os.environ``).
    """
    env = os.environ if env is None else env
    decoders = {"worker_decoder": decoder_threads(env, in_worker=True),
                "in_process_decoder": decoder_threads(env, in_worker=False)}
    fixed = fixed_threads(threads, env)
    if fixed is not None:
        source = "--threads" if threads is not None else THREADS_ENV
        return ThreadPolicy(compute=fixed, reason=f"{fixed} compute thread(s), fixed by {source}", **decoders)
    if not may_set_cpu_threads(device, workers, env):
        return ThreadPolicy(**decoders)
    if training is not None:
        split = plan_cpu_split(device, workers, training.model_cfg, training.input_shape, training.paths,
                               training.sampling, env=env)
        return ThreadPolicy(compute=split.threads, reason=split.reason, **decoders)
    shared = threads_leaving_worker_cores(workers)
    return ThreadPolicy(adaptive=True, shared=shared, reason=f"CPU: {shared} compute thread(s) while the loop "
                        f"waits for its {workers} decoding worker(s), every core while it computes", **decoders)


class ThreadLoop:
    """Torch's compute threads for the length of one loop: ``with policy.loop() as loop:``.

    On entry it saves the count and applies the policy (or none: ``ThreadLoop()`` only saves,
    and :meth:`apply` sets one later, as training does once its work is counted). On exit
    the saved count is back, whatever happened in the loop.

    An adaptive policy follows what the loop waits on, told batch by batch with
    :meth:`record`: every ``window`` batches (the first, whose wait is worker start-up,
    aside), more waiting than computing leaves a core to each worker (``policy.shared``);
    computing ``margin`` times longer than waiting takes them back. The margin keeps a loop
    near the balance from switching at every window.
    """

    def __init__(self, policy: Optional[ThreadPolicy] = None, window: int = 4, margin: float = 2.0) -> None:
        self.policy = policy or ThreadPolicy()
        self.window, self.margin = window, margin
        self.waited = self.computed = 0.0
        self.batches = 0
        self.shared: Optional[bool] = None
        self._before: Optional[int] = None
        self._full: Optional[int] = None

    def __enter__(self) -> "ThreadLoop":
        import torch

        self._before = torch.get_num_threads()
        self.apply(self.policy)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._before is not None:
            _set_torch_threads(self._before)

    def apply(self, policy: ThreadPolicy) -> None:
        """Follow ``policy`` from now on (inside the ``with`` block)."""
        import torch

        self.policy, self.shared = policy, None
        self.waited = self.computed = 0.0
        self.batches = 0
        if policy.compute is not None:
            _set_torch_threads(policy.compute)
        self._full = torch.get_num_threads()

    def record(self, waited: float, computed: float) -> None:
        """One batch: seconds spent waiting for its data, seconds spent computing it."""
        self.batches += 1
        if not self.policy.adaptive or self.policy.shared is None or self.batches == 1:
            return
        self.waited += waited
        self.computed += computed
        if (self.batches - 1) % self.window:
            return
        if self.waited > self.computed and self.shared is not True:
            self.shared = True
            _set_torch_threads(self.policy.shared)
        elif self.computed > self.margin * self.waited and self.shared is not False:
            self.shared = False
            _set_torch_threads(self._full)
        self.waited = self.computed = 0.0
