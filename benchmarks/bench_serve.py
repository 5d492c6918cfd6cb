"""``mmvgm serve``'s /v1/trace throughput vs. ``Predictor.predict_batch``, its latency, and its memory.

Prints, measured in one run (a tiny untrained videomae_tiny joint checkpoint and synthetic
320x240 H.264 videos, both made here):

* files/s of ``Predictor.predict_batch`` over the N videos, with the batch size and decoding
  workers the server is started with (``Predictor.from_checkpoint(ck, workers=W)``, warmed up
  first): the ceiling of the same scoring path without HTTP.
* requests/s of ``POST /v1/trace`` (multipart ``file`` uploads of those videos, in a loop)
  from ``--clients`` concurrent clients, each a thread with its own ``httpx.Client``, against a
  real ``python -m mmvgm serve`` process on 127.0.0.1, as a ratio to the line above.
  Goal: >= 0.8. With it: p50 / p99 latency of those requests, the server's mean model batch
  size (``mmvgm_batch_size_sum / mmvgm_batch_size_count`` of ``/metrics`` over the timed
  requests), and where the ratio goes: the files/s of one ``predict_batch`` call per batch
  (a server without its decode-ahead thread would score at that rate), and the CPU
  milliseconds per file of each side (the clients share the machine's cores with the server).
* RSS of the server's process tree (the process and its children: decoding workers, fork
  server), sampled over ``--rss-requests`` more requests: the peak over the first 100 and over
  the last 100, and the growth between them. Goal: flat, i.e. growth < 10% and < 50 MB.

The two sides run in interleaved rounds (predict_batch, then the requests, then the other way
round), and each figure is the median over the rounds: other processes on a shared machine
slow both alike. On a CPU machine a second setting follows by default (``--sweep auto``): the
same server with ``MMVGM_THREADS`` fixing its compute threads (``predict_batch`` then gets the
same fixed count); the server's own default on a CPU already leaves a core to each decoding
worker. Every answer must be 200 with a
verdict; failures are counted and the first few printed (the run exits 1 if there were any).
No time is asserted.

    python benchmarks/bench_serve.py                              # defaults for this machine
    python benchmarks/bench_serve.py --workers 0 --sweep ""       # the server's own defaults only
    python benchmarks/bench_serve.py --sweep "0:8:10,1:8:10:1,2:8:0,2:16:10"   # W:B:M[:threads]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

RSS_WINDOW = 100  # requests at each end of the memory run
FLAT_FRACTION, FLAT_MB = 0.10, 50.0


# ----------------------------------------------------------------------------- the ceiling

def cpu_seconds(processes) -> float:
    """User + system CPU seconds so far of the psutil ``processes`` (those gone count 0)."""
    import psutil

    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


class Ceiling:
    """``Predictor.from_checkpoint(ck, workers=W, threads=T)`` in this process, warmed up;
    ``run()``: the files/s of one ``predict_batch(paths, batch_size=B)`` call, and its CPU
    seconds per file (this process, its decoding workers)."""

    def __init__(self, checkpoint: Path, paths: List[Path], batch_size: int, workers: int,
                 threads: Optional[int] = None) -> None:
        import psutil

        from mmvgm.predict.predictor import Predictor

        self.paths, self.batch_size = paths, batch_size
        self.me = psutil.Process()
        before = {p.pid for p in self.me.children(recursive=True)}
        self.predictor = Predictor.from_checkpoint(checkpoint, workers=workers, threads=threads)
        self.predictor.predict_batch(paths[: 2 * batch_size], batch_size=batch_size)  # warm-up
        # Its decoding workers: the children started since (not the server, started later).
        self.workers = [p for p in self.me.children(recursive=True) if p.pid not in before]

    def run(self, one_batch_at_a_time: bool = False) -> dict:
        """One ``predict_batch`` over all the files; ``one_batch_at_a_time``: a call per batch
        instead: no batch decoded while another is scored."""
        b = self.batch_size
        calls = [self.paths[i:i + b] for i in range(0, len(self.paths), b)] if one_batch_at_a_time else [self.paths]
        main0, kids0 = cpu_seconds([self.me]), cpu_seconds(self.workers)
        start = time.perf_counter()
        verdicts = [v for paths in calls for v in self.predictor.predict_batch(paths, batch_size=b)]
        seconds = time.perf_counter() - start
        main1, kids1 = cpu_seconds([self.me]), cpu_seconds(self.workers)
        bad = [v for v in verdicts if not v.ok]
        assert not bad, f"{len(bad)} files failed in predict_batch: {bad[0].error}"
        n = len(self.paths)
        return {"rate": n / seconds, "cpu_main": (main1 - main0) / n, "cpu_workers": (kids1 - kids0) / n}

    def close(self) -> None:
        self.predictor.close()


# ----------------------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m mmvgm serve`` on 127.0.0.1 in a session of its own (stopped with its workers)."""

    def __init__(self, checkpoint: Path, state_dir: Path, workers: int, max_batch: int, max_wait_ms: float,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = state_dir.parent / f"server-{self.port}.log"
        self.args = [sys.executable, "-m", "mmvgm", "serve", "-c", str(checkpoint), "--port", str(self.port),
                     "--host", "127.0.0.1", "--state-dir", str(state_dir), "--workers", str(workers),
                     "--max-batch", str(max_batch), "--max-wait-ms", f"{max_wait_ms:g}", "--log-level", "warning"]
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 120.0) -> float:
        """Start it and wait for ``/readyz`` == 200; returns the seconds that took."""
        import httpx

        start = time.perf_counter()
        env = {**os.environ, **self.env,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve was not ready after {timeout:g} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def tree(self) -> list:
        import psutil

        main = psutil.Process(self.proc.pid)
        return [main, *main.children(recursive=True)]

    def cpu_seconds(self) -> Tuple[float, float]:
        """CPU seconds so far of the server process, and of its children summed."""
        main, *children = self.tree()
        return cpu_seconds([main]), cpu_seconds(children)

    def rss(self) -> Tuple[int, int, int]:
        """RSS of the whole tree (summed: pages shared between processes count in each), of
        the server process alone, and the number of processes in the tree."""
        import psutil

        total, main, count = 0, 0, 0
        for i, p in enumerate(self.tree()):
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total, count = total + rss, count + 1
            if i == 0:
                main = rss
        return total, main, count

    def metrics(self) -> Dict[str, float]:
        import httpx

        text = httpx.get(self.url + "/metrics", timeout=10).text
        out = {}
        for name in ("mmvgm_batch_size_sum", "mmvgm_batch_size_count"):
            match = re.search(rf"^{name} (\S+)$", text, re.M)
            out[name] = float(match.group(1)) if match else 0.0
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


# ----------------------------------------------------------------------------- the clients

class Load:
    """POST /v1/trace from ``clients`` threads, each with its own ``httpx.Client`` (made once and
    kept: making one builds an SSL context, tens of ms of CPU), uploading ``bodies`` round-robin."""

    def __init__(self, url: str, bodies: List[Tuple[str, bytes]], clients: int) -> None:
        import httpx

        self.url, self.bodies = url + "/v1/trace", bodies
        self.clients = [httpx.Client(timeout=300) for _ in range(clients)]

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def run(self, total: int, on_done=None, bodies: Optional[List[Tuple[str, bytes]]] = None,
            expect: int = 200) -> dict:
        """``total`` requests; ``on_done(n)`` is called (under a lock) as the n-th answer arrives.
        An answer other than ``expect`` (200: with a verdict) is a failure."""
        bodies = bodies or self.bodies
        lock = threading.Lock()
        issued, done = [0], [0]
        latencies: List[float] = []
        failures: List[str] = []

        def client(http) -> None:
            while True:
                with lock:
                    i = issued[0]
                    if i >= total:
                        return
                    issued[0] += 1
                name, body = bodies[i % len(bodies)]
                start = time.perf_counter()
                try:
                    answer = http.post(self.url, files={"file": (name, body, "video/mp4")})
                    good = answer.status_code == expect and (expect != 200 or "verdict" in answer.json())
                    problem = None if good else f"{answer.status_code}: {answer.text[:200]}"
                except Exception as exc:  # noqa: BLE001 - counted and printed
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if problem:
                        failures.append(f"request {i} ({name}): {problem}")
                    done[0] += 1
                    if on_done is not None:
                        on_done(done[0])

        threads = [threading.Thread(target=client, args=(http,), daemon=True) for http in self.clients]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "rate": total / seconds, "latencies": sorted(latencies), "failures": failures}


def percentile(sorted_values: List[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def memory_run(server: Server, load: Load, requests: int, interval: float = 0.05) -> dict:
    """Peak RSS (tree, server process) over the first and the last ``RSS_WINDOW`` answers of
    ``requests``, sampled every ``interval`` seconds."""
    import psutil

    phase = ["first"]  # the window the sampler is in: first, middle, last
    peaks = {w: [0, 0, 0] for w in ("first", "middle", "last")}
    stop = threading.Event()

    def on_done(n: int) -> None:
        phase[0] = "first" if n < RSS_WINDOW else "last" if n >= requests - RSS_WINDOW else "middle"

    def sample() -> None:
        while not stop.is_set():
            try:
                now = server.rss()
            except psutil.Error:
                now = (0, 0, 0)
            peaks[phase[0]] = [max(a, b) for a, b in zip(peaks[phase[0]], now)]
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = load.run(requests, on_done=on_done)
    stop.set()
    sampler.join()
    return {**result, **peaks}


# ----------------------------------------------------------------------------- one setting

def media(work: Path, count: int, frames: int, width: int, height: int) -> List[Path]:
    from bench_scan import make_videos

    return make_videos(work / "videos", count, frames=frames, width=width, height=height)


def run_setting(args, checkpoint: Path, paths: List[Path], workers: int, max_batch: int, max_wait_ms: float,
                threads: Optional[int], work: Path, rss: bool) -> dict:
    """``args.rounds`` rounds of (one predict_batch call, ``args.requests`` /v1/trace requests),
    interleaved, so that both see the same machine; then the memory run."""
    out = {"workers": workers, "max_batch": max_batch, "max_wait_ms": max_wait_ms, "threads": threads,
           "rounds": []}
    ceiling = Ceiling(checkpoint, paths, max_batch, workers, threads)  # the server's compute threads too
    bodies = [(p.name, p.read_bytes()) for p in paths]
    server = Server(checkpoint, work / f"state-{workers}-{max_batch}-{max_wait_ms:g}-{threads}", workers, max_batch,
                    max_wait_ms, env=None if threads is None else {"MMVGM_THREADS": str(threads)})
    failures: List[str] = []
    load = None
    try:
        out["ready_s"] = server.start()
        load = Load(server.url, bodies, args.clients)
        failures += load.run(max(2 * args.clients, 2 * max_batch))["failures"]  # warm-up
        latencies: List[float] = []
        batches = files = 0.0
        for i in range(args.rounds):
            if i % 2 == 0:  # predict_batch first in even rounds, last in odd ones: a trend in the
                c, one = ceiling.run(), ceiling.run(True)  # machine's other load favours neither side
            before, (main0, kids0), me0 = server.metrics(), server.cpu_seconds(), time.process_time()
            s = load.run(args.requests)
            after, (main1, kids1), me1 = server.metrics(), server.cpu_seconds(), time.process_time()
            if i % 2 == 1:
                one, c = ceiling.run(True), ceiling.run()
            batches += after["mmvgm_batch_size_count"] - before["mmvgm_batch_size_count"]
            files += after["mmvgm_batch_size_sum"] - before["mmvgm_batch_size_sum"]
            latencies += s["latencies"]
            failures += s["failures"]
            n = args.requests
            out["rounds"].append({
                "ceiling": c, "one": one, "rate": s["rate"], "ratio": s["rate"] / c["rate"],
                "one_ratio": one["rate"] / c["rate"], "http_ratio": s["rate"] / one["rate"],
                "cpu_main": (main1 - main0) / n, "cpu_workers": (kids1 - kids0) / n, "cpu_clients": (me1 - me0) / n,
                "cores_busy": ((main1 - main0) + (kids1 - kids0) + (me1 - me0)) / s["seconds"]})
        # The HTTP path alone: the same bytes, their container magic cleared and named .bin, are
        # received, parsed, saved and refused (422) before anything is decoded.
        refused = [(Path(name).with_suffix(".bin").name, bytes(16) + body[16:]) for name, body in bodies]
        (main0, kids0), me0 = server.cpu_seconds(), time.process_time()
        h = load.run(args.requests * args.rounds // 2, bodies=refused, expect=422)
        (main1, kids1), me1 = server.cpu_seconds(), time.process_time()
        failures += h["failures"]
        n = args.requests * args.rounds // 2
        out["http_only"] = {"rate": h["rate"], "cpu_main": (main1 - main0) / n, "cpu_clients": (me1 - me0) / n}
        out["latencies"] = sorted(latencies)
        out["mean_batch"] = files / batches if batches else float("nan")
        if rss:
            out["memory"] = memory_run(server, load, args.rss_requests)
            failures += out["memory"]["failures"]
    finally:
        if load is not None:
            load.close()
        server.stop()
        ceiling.close()
    out["failures"] = failures
    return out


def med(rounds: List[dict], *keys: str) -> float:
    values = []
    for r in rounds:
        for k in keys[:-1]:
            r = r[k]
        values.append(r[keys[-1]])
    return statistics.median(values)


def listed(values, fmt: str = ".1f") -> str:
    return ", ".join(format(v, fmt) for v in values)


def report(r: dict, args) -> None:
    rounds = r["rounds"]
    ms = [1000 * x for x in r["latencies"]]
    r["ceiling"], r["rate"], r["ratio"] = med(rounds, "ceiling", "rate"), med(rounds, "rate"), med(rounds, "ratio")
    r["p50"], r["p99"] = percentile(ms, 50), percentile(ms, 99)
    fixed = "" if r["threads"] is None else f", threads={r['threads']}"
    print(f"  predict_batch({len(args.paths)} files, batch_size={r['max_batch']}), workers={r['workers']}{fixed}: "
          f"{r['ceiling']:7.1f} files/s (median of {len(rounds)}: "
          f"{listed(x['ceiling']['rate'] for x in rounds)})")
    print(f"  /v1/trace, {args.clients} clients, {args.requests} requests a round: {r['rate']:7.1f} requests/s "
          f"({listed(x['rate'] for x in rounds)})")
    print(f"      ratio {r['ratio']:.2f} (median of the rounds' ratios: "
          f"{listed((x['ratio'] for x in rounds), '.2f')}; goal >= 0.8)")
    print(f"      of which: one predict_batch call per batch of {r['max_batch']} "
          f"(no decoding ahead), {med(rounds, 'one', 'rate'):.1f} files/s, {med(rounds, 'one_ratio'):.2f} of one call; "
          f"the server {med(rounds, 'http_ratio'):.2f} of that (HTTP, uploads, clients)")
    print(f"      latency p50 {r['p50']:6.1f} ms, p99 {r['p99']:6.1f} ms ({len(ms)} requests); "
          f"mean model batch {r['mean_batch']:.2f} (--max-batch {r['max_batch']}); "
          f"server ready {r['ready_s']:.1f} s after its start")
    pb_main, pb_workers = med(rounds, "ceiling", "cpu_main"), med(rounds, "ceiling", "cpu_workers")
    sv_main, sv_workers, clients = med(rounds, "cpu_main"), med(rounds, "cpu_workers"), med(rounds, "cpu_clients")
    pb_busy = med([{"b": x["ceiling"]["rate"] * (x["ceiling"]["cpu_main"] + x["ceiling"]["cpu_workers"])}
                   for x in rounds], "b")
    cpu_pb, cpu_server = pb_main + pb_workers, sv_main + sv_workers
    print(f"      CPU ms per file: predict_batch {1000 * pb_main:.1f} in its process + {1000 * pb_workers:.1f} in its "
          f"workers ({pb_busy:.2f} of {os.cpu_count()} cores busy), a call per batch "
          f"{1000 * med(rounds, 'one', 'cpu_main'):.1f} + {1000 * med(rounds, 'one', 'cpu_workers'):.1f}; /v1/trace {1000 * sv_main:.1f} in the server "
          f"process + {1000 * sv_workers:.1f} in its workers + {1000 * clients:.1f} in the clients "
          f"({med(rounds, 'cores_busy'):.2f} cores busy)")
    print(f"      the ratio if both were CPU-bound on these cores: {cpu_pb / (cpu_server + clients):.2f}, "
          f"{cpu_pb / cpu_server:.2f} with the clients' CPU elsewhere")
    h = r["http_only"]
    print(f"      the HTTP path alone (the same uploads refused with 422 before decoding): {h['rate']:.1f} requests/s, "
          f"CPU ms per request {1000 * h['cpu_main']:.1f} in the server process, "
          f"{1000 * h['cpu_clients']:.1f} in the clients")
    if "memory" in r:
        m = r["memory"]
        (first, first_main), (last, last_main) = [[v / 2**20 for v in m[w][:2]] for w in ("first", "last")]
        procs = m["last"][2]
        growth, growth_main = last - first, last_main - first_main
        r["rss"] = (first, last, growth, first_main, last_main)
        flat = growth < FLAT_FRACTION * first and growth < FLAT_MB
        print(f"  server RSS over {args.rss_requests} more requests (peak over the first {RSS_WINDOW} -> over the "
              f"last {RSS_WINDOW}): tree of {procs} processes (summed) {first:7.1f} -> {last:7.1f} MB, "
              f"growth {growth:+.1f} MB ({growth / first:+.1%}); the server process {first_main:.1f} -> "
              f"{last_main:.1f} MB ({growth_main:+.1f} MB): {'flat' if flat else 'NOT flat'} "
              f"(flat: tree growth < {FLAT_FRACTION:.0%} and < {FLAT_MB:g} MB)")
    print(f"  failed answers: {len(r['failures'])}")
    for f in r["failures"][:5]:
        print(f"      {f}")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=64, help="distinct files (the predict_batch call, the uploads)")
    parser.add_argument("--frames", type=int, default=32, help="frames per video")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers (and the predictor's)")
    parser.add_argument("--max-batch", type=int, default=8, help="the server's --max-batch (predict_batch's batch)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--server-threads", type=int, default=None,
                        help="MMVGM_THREADS for the server process only [default: unset, the thread policy's choice]")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds of predict_batch and /v1/trace")
    parser.add_argument("--requests", type=int, default=64, help="/v1/trace requests a round")
    parser.add_argument("--rss-requests", type=int, default=500)
    parser.add_argument("--sweep", default="auto",
                        help="comma-separated W:B:M[:T] settings (workers:max-batch:max-wait-ms[:the server's "
                             "MMVGM_THREADS]) measured after the main one, the same way but without the memory "
                             "run; 'auto' (the default): on a CPU machine, the main setting with the server's "
                             "compute threads fixed to leave a core to each decoding worker; '' for none")
    args = parser.parse_args()
    assert args.rss_requests >= 2 * RSS_WINDOW, f"--rss-requests must be >= {2 * RSS_WINDOW}"

    print(f"machine: {os.cpu_count()} CPU cores, "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}; "
          f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}")
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    failed = 0
    try:
        from mmvgm.runtime.workers import usable_cores
        from tests.inference_helpers import make_checkpoint

        checkpoint = make_checkpoint(work / "ck")
        args.paths = paths = media(work, args.videos, args.frames, args.width, args.height)
        size = sum(p.stat().st_size for p in paths) / len(paths)
        print(f"tiny untrained videomae_tiny joint checkpoint; {args.videos} videos {args.width}x{args.height} "
              f"H.264, {args.frames} frames, {size / 1024:.0f} KB each on average")
        settings = [(args.workers, args.max_batch, args.max_wait_ms, args.server_threads, True)]
        if args.sweep == "auto":
            auto = max(1, usable_cores() - args.workers)
            args.sweep = "" if torch.cuda.is_available() or not args.workers or args.server_threads == auto else \
                f"{args.workers}:{args.max_batch}:{args.max_wait_ms:g}:{auto}"
        for spec in filter(None, args.sweep.split(",")):
            w, b, m, *t = spec.split(":")
            settings.append((int(w), int(b), float(m), int(t[0]) if t else None, False))
        results = []
        for workers, max_batch, max_wait_ms, threads, rss in settings:
            print(f"--workers {workers} --max-batch {max_batch} --max-wait-ms {max_wait_ms:g}"
                  f"{'' if threads is None else f', server with MMVGM_THREADS={threads}'}:")
            r = run_setting(args, checkpoint, paths, workers, max_batch, max_wait_ms, threads, work, rss)
            report(r, args)
            failed += len(r["failures"])
            results.append(r)
        if len(results) > 1:
            print("summary  W:B:M[:T]   predict_batch files/s   /v1/trace req/s   ratio   p50 ms   p99 ms   mean batch")
            for r in results:
                spec = f"{r['workers']}:{r['max_batch']}:{r['max_wait_ms']:g}" + \
                    ("" if r["threads"] is None else f":{r['threads']}")
                print(f"  {spec:<12s} {r['ceiling']:12.1f} "
                      f"{r['rate']:17.1f} {r['ratio']:9.2f} {r['p50']:8.1f} {r['p99']:8.1f} {r['mean_batch']:9.2f}")
        print(f"load average at the end {os.getloadavg()[0]:.2f} (other processes share these cores)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
