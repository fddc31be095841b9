"""Load test: a real `fashion-search serve` process on loopback, driven by concurrent clients that post
street-scene photos. Records latency percentiles, throughput, answers by status code and the server's
resident memory (VmRSS) before, during and after the run, with its growth over the second half.

    python -m benchmarks.load_test [--items 500] [--concurrency 4] [--requests 2000] [--max-seconds 330]
        [--overload-concurrency 16] [--overload-requests 2000] [--overload-max-seconds 60]
        [--out benchmarks/results/load_test.json]

Two phases, each against its own server process on 127.0.0.1 (never any other address), with the models the
FASHION_* settings name (default: the shipped fashion-net embedder and garment parser, no data needed):
- steady: `--concurrency` clients against the configured search slots and queue;
- overload: `--overload-concurrency` clients against the same slots with a short queue timeout, to show
  that the excess is refused quickly (503 with Retry-After) instead of piling up.
Each phase stops at its request count or its time limit, whichever comes first. The per-client-address
rate limit is switched off: every client here shares one address, and the test measures search capacity.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.machine import machine_info
from scripts.demo import free_port, wait_ready
from scripts.demo_catalog import generate_catalog

HOST = "127.0.0.1"  # loopback only: this script never sends a request anywhere else
READY_TIMEOUT_S = 180
REQUEST_TIMEOUT_S = 60
SETTINGS_SHOWN = (
    "max_concurrent_searches",
    "queue_timeout_s",
    "request_timeout_s",
    "rate_limit_per_s",
    "detector",
    "faiss_threads",
    "detector_threads",
    "max_upload_bytes",
)


@dataclass
class Outcome:
    started_s: float
    latency_ms: float
    status: str  # the HTTP status code, or the name of the transport error
    retry_after: str | None = None


@dataclass(frozen=True)
class Load:
    concurrency: int
    max_requests: int
    max_seconds: float
    rss_every: int  # sample the server's RSS every this many answers


@dataclass
class Phase:
    """What one phase sent and what came back, with the server's memory alongside."""

    outcomes: list[Outcome] = field(default_factory=list)
    rss_samples: list[tuple[int, float, float]] = field(default_factory=list)  # (answered, s, MB)
    lock: threading.Lock = field(default_factory=threading.Lock)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    if len(values) == 1:
        return {"p50": round(values[0], 1), "p95": round(values[0], 1), "p99": round(values[0], 1), "n": 1}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 1),
        "p95": round(cuts[94], 1),
        "p99": round(cuts[98], 1),
        "max": round(max(values), 1),
        "mean": round(statistics.fmean(values), 1),
        "n": len(values),
    }


def growth_mb_per_1000(samples: list[tuple[int, float, float]]) -> float | None:
    """Least-squares slope of RSS against requests answered, over the second half of the run."""
    if not samples:
        return None
    half = [(done, mb) for done, _, mb in samples if done >= samples[-1][0] / 2]
    if len(half) < 3 or len({done for done, _ in half}) < 2:
        return None
    slope, _ = statistics.linear_regression([d for d, _ in half], [mb for _, mb in half])
    return round(slope * 1000, 3)


def start_server(index: Path, env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port(HOST)
    command = [sys.executable, "-m", "scripts.cli", "serve", "--index", str(index), "--host", HOST]
    with log_path.open("wb") as log:
        server = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=log, stderr=log)
    base = f"http://{HOST}:{port}"
    wait_ready(base, server, READY_TIMEOUT_S, f"; see {log_path}")
    return server, base


def drive(base: str, pid: int, photos: list[tuple[str, bytes]], load: Load) -> Phase:
    """`load.concurrency` clients (one keep-alive connection each) send searches until `load.max_requests`
    have been sent or `load.max_seconds` have passed."""
    phase = Phase()
    numbers = itertools.count()
    started = time.monotonic()
    stop_at = started + load.max_seconds

    def client() -> None:
        with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as session:
            while True:
                with phase.lock:
                    number = next(numbers)
                if number >= load.max_requests or time.monotonic() >= stop_at:
                    return
                name, photo = photos[number % len(photos)]
                sent = time.monotonic()
                try:
                    answer = session.post(
                        "/v1/search", files={"image": (name, photo, "image/jpeg")}, data={"top_k": "10"}
                    )
                    status, retry_after = str(answer.status_code), answer.headers.get("retry-after")
                except httpx.TransportError as exc:
                    status, retry_after = type(exc).__name__, None
                done = Outcome(
                    round(sent - started, 3), (time.monotonic() - sent) * 1000, status, retry_after
                )
                with phase.lock:
                    phase.outcomes.append(done)
                    answered = len(phase.outcomes)
                if answered % load.rss_every == 0:
                    sample = (answered, round(time.monotonic() - started, 2), rss_mb(pid))
                    with phase.lock:
                        phase.rss_samples.append(sample)

    workers = [threading.Thread(target=client, name=f"client-{i}") for i in range(load.concurrency)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return phase


def run_phase(
    name: str, index: Path, env: dict[str, str], photos: list[tuple[str, bytes]], load: Load, workdir: Path
) -> dict[str, Any]:
    log_path = workdir / f"server-{name}.log"
    server, base = start_server(index, env, log_path)
    try:
        with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as warm:
            for photo_name, photo in photos:  # first searches pay one-off costs; not counted
                warm.post("/v1/search", files={"image": (photo_name, photo, "image/jpeg")})
        before = rss_mb(server.pid)
        started = time.monotonic()
        phase = drive(base, server.pid, photos, load)
        seconds = time.monotonic() - started
        after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    by_status = Counter(outcome.status for outcome in phase.outcomes)
    samples = sorted(phase.rss_samples)
    return {
        "concurrency": load.concurrency,
        "request_limit": load.max_requests,
        "time_limit_s": load.max_seconds,
        "requests": len(phase.outcomes),
        "seconds": round(seconds, 1),
        "throughput_rps": round(len(phase.outcomes) / seconds, 2) if seconds else None,
        "by_status": dict(sorted(by_status.items())),
        "errors": {status: n for status, n in sorted(by_status.items()) if status != "200"},
        "latency_ms": percentiles([o.latency_ms for o in phase.outcomes]),
        "latency_ms_by_status": {
            status: percentiles([o.latency_ms for o in phase.outcomes if o.status == status])
            for status in sorted(by_status)
        },
        "retry_after_on_503": dict(Counter(o.retry_after for o in phase.outcomes if o.status == "503")),
        "server_rss_mb": {
            "before": before,
            "after": after,
            "peak_sampled": max([mb for _, _, mb in samples] + [before, after]),
            "growth_mb_per_1000_requests_second_half": growth_mb_per_1000(samples),
            "samples": [list(sample) for sample in samples],
        },
        "server_exit_code": server.returncode,
        "server_tracebacks": log_text.count("Traceback (most recent call last)"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=500, help="generated catalogue size")
    parser.add_argument("--scenes", type=int, default=8, help="street scenes posted in turn")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=2000, help="steady phase: most requests")
    parser.add_argument("--max-seconds", type=float, default=330, help="steady phase: most seconds")
    parser.add_argument("--overload-concurrency", type=int, default=16)
    parser.add_argument("--overload-requests", type=int, default=2000)
    parser.add_argument("--overload-max-seconds", type=float, default=60)
    parser.add_argument("--overload-queue-timeout-s", type=float, default=0.05)
    parser.add_argument("--rss-every", type=int, default=50, help="sample the server's RSS every N answers")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/load_test.json"))
    args = parser.parse_args()
    if min(args.concurrency, args.requests, args.overload_concurrency, args.rss_every) < 1:
        parser.error("--concurrency, --requests, --overload-concurrency and --rss-every must be >= 1")

    from search.settings import Settings

    machine = machine_info()
    base_env = {
        **os.environ,
        "FASHION_HOST": HOST,
        "FASHION_RATE_LIMIT_PER_S": "0",
    }
    steady = Settings(host=HOST, rate_limit_per_s=0)
    overload = Settings(host=HOST, rate_limit_per_s=0, queue_timeout_s=args.overload_queue_timeout_s)
    run_started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        catalog = generate_catalog(workdir / "catalog", n_items=args.items, n_scenes=args.scenes)
        build = subprocess.run(
            [sys.executable, "-m", "scripts.cli", "index", "build", "--catalog", str(catalog.feed)]
            + ["--out", str(workdir / "index"), "--no-progress"],
            env=base_env,
            capture_output=True,
            text=True,
            check=False,
        )
        if build.returncode != 0:
            raise SystemExit(f"index build failed: {build.stderr.strip().splitlines()[-1]}")
        photos = [(scene.name, scene.read_bytes()) for scene in catalog.scenes]
        phases = {
            "steady": run_phase(
                "steady",
                workdir / "index",
                base_env,
                photos,
                Load(args.concurrency, args.requests, args.max_seconds, args.rss_every),
                workdir,
            ),
            "overload": run_phase(
                "overload",
                workdir / "index",
                {**base_env, "FASHION_QUEUE_TIMEOUT_S": str(args.overload_queue_timeout_s)},
                photos,
                Load(
                    args.overload_concurrency,
                    args.overload_requests,
                    args.overload_max_seconds,
                    args.rss_every,
                ),
                workdir,
            ),
        }
    phases["steady"]["settings"] = steady.model_dump(mode="json", include=set(SETTINGS_SHOWN))
    phases["overload"]["settings"] = overload.model_dump(mode="json", include=set(SETTINGS_SHOWN))
    results = {
        "benchmark": "load_test",
        "command": " ".join(["python -m benchmarks.load_test", *sys.argv[1:]]),
        "run_seconds": round(time.monotonic() - run_started, 1),
        "machine": {**machine, "load_average_after": [round(v, 2) for v in os.getloadavg()]},
        "embedder": steady.embedder.model_dump(mode="json", include={"kind", "threads", "batch_size"}),
        "catalogue": {
            "items": args.items,
            "scenes": args.scenes,
            "build": build.stdout.strip().split(": ", 1)[-1],  # counts, time and model, not the temp path
        },
        "photos": [{"name": name, "bytes": len(photo)} for name, photo in photos],
        "phases": phases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    summary = {
        name: {key: phase[key] for key in ("requests", "throughput_rps", "errors", "latency_ms")}
        | {"rss_mb": {k: v for k, v in phase["server_rss_mb"].items() if k != "samples"}}
        for name, phase in phases.items()
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
