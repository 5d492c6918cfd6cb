"""Runtime: device and precision, decoding workers, CPU threads, provenance."""
from mmvgm.runtime.device import autocast_dtype, pick_device
from mmvgm.runtime.provenance import file_sha256, package_versions, seed_everything
from mmvgm.runtime.threads import (CpuThreadsByLoad, may_set_cpu_threads, share_cpu_with_workers,
                                   threads_leaving_worker_cores)
from mmvgm.runtime.workers import (MAX_DEFAULT_DECODE_WORKERS, WORKER_START_ENV, WORKER_START_METHODS,
                                   default_decode_workers, forget_inherited_executor_threads,
                                   prepare_decoding_workers, usable_cores, worker_start_method)

__all__ = ["autocast_dtype", "pick_device", "file_sha256", "package_versions", "seed_everything",
           "CpuThreadsByLoad", "may_set_cpu_threads", "share_cpu_with_workers", "threads_leaving_worker_cores",
           "MAX_DEFAULT_DECODE_WORKERS", "WORKER_START_ENV", "WORKER_START_METHODS", "default_decode_workers",
           "forget_inherited_executor_threads", "prepare_decoding_workers", "usable_cores",
           "worker_start_method"]
