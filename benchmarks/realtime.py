"""Speed on real street photos, quoted as a ratio to the peer a user would assemble instead, measured in
one run on the same machine (issue 15, section 4).

    python -m benchmarks.realtime --data ../shared/data [--limit N] [--catalogue-limit N]
        [--configs "v1=FASHION_EMBEDDER__PRETRAINED=models/weights/fashion-embedder-v1.safetensors;
                    v3=FASHION_EMBEDDER__PRETRAINED=models/weights/fashion-net-v3.safetensors"]
        [--label ours --ours-env KEY=VALUE,...] [--peer-threads default,1] [--repeats 3] [--block 10]
        [--out benchmarks/results/realtime.json]

Photos: the 90 held-out CCP photos (`models.fashion_net.data.ccp_heldout_ids`; `--limit N`: the first N by
id). Catalogue, the same for every system: the fpi validation products (fashion master categories,
`benchmarks.quality_data.fpi_products`), as a JSON Lines feed with the shop's structured fields.

- OURS, per configuration: the index built with the real CLI (`python -m scripts.cli index build --catalog
  FEED --out DIR --no-progress`) and served by `python -m scripts.cli serve` in a subprocess, with the
  current environment plus FASHION_RATE_LIMIT_PER_S=0, generous slot, queue and request timeouts, and the
  configuration's settings. `--configs "LABEL=KEY=VALUE,KEY=VALUE;LABEL=..."` names several (an empty
  setting list = the defaults, whatever model they ship: pin the weights to compare models; the report
  names the model each index was built with, and warns when two configurations serve the same one);
  without it, one configuration `--label` with `--ours-env`. A configuration
  whose weights file (a *PRETRAINED or *WEIGHTS setting that names a file) is missing is reported as
  skipped with the reason, and so is one whose index build or start-up fails.
- PEER (benchmarks/peer_server.py): open_clip ViT-B-32 with random weights (seeded) on the whole photo,
  its own 224 px preprocess, exact FAISS IndexFlatIP over the same catalogue, FastAPI + uvicorn in a
  subprocess. `--peer-threads` (default `default,1`) starts one peer per entry: `peer` with PyTorch's
  default thread count (all cores), the one a user gets and the one the ratio is quoted against, and
  `peer-1t` with one thread, as ours uses per search by default (FASHION_DETECTOR_THREADS and
  FASHION_EMBEDDER__THREADS = 1, so that concurrent searches use the other cores).

Every system gets the same client (one keep-alive httpx connection, concurrency 1), the same warm-up (5
requests, not counted) and the same photos (multipart `image`, top_k 10). All servers are started first;
then the photos go in blocks of `--block`: each block is sent to every system in turn and the order of
the systems rotates by one from block to block, and the whole pass is repeated `--repeats` times. So a
change of load during the run (other work on the machine) hits every system alike, and the spread of the
per-block ratio shows how much it moved. Recorded per request: client wall-clock time, the server's
`timings_ms` stages and (ours) the garments found and whether the answer is one whole-frame garment (a
photo the v3 product gate calls a product shot skips the parser). Reported: p50, p95, mean per system;
ours p50 / peer p50 per configuration (the figure to quote; target <= 0.5), also p95 and per-photo
paired ratios; stage medians; garments per photo; machine, CPU, load average before and after, versions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.arguments import argument_parser
from benchmarks.machine import machine_info
from benchmarks.quality_data import Product, fpi_products, write_feed
from models.fashion_net.data import ccp_heldout_ids
from models.parser.data import photo_path
from scripts.demo import free_port, wait_ready

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # loopback only
WARMUP_REQUESTS = 5
TOP_K = 10
TARGET_RATIO = 0.5
REQUEST_TIMEOUT_S = 300
OURS_READY_TIMEOUT_S = 600
SERVICE_ENV = {  # the pipeline is measured, not admission control
    "FASHION_RATE_LIMIT_PER_S": "0",
    "FASHION_MAX_CONCURRENT_SEARCHES": "4",
    "FASHION_QUEUE_TIMEOUT_S": "120",
    "FASHION_REQUEST_TIMEOUT_S": "300",
}
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".onnx", ".ckpt")
THREAD_SETTINGS = {  # ours' thread settings and their defaults (search/settings.py), shown in the report
    "FASHION_DETECTOR_THREADS": "1",
    "FASHION_EMBEDDER__THREADS": "1",
    "FASHION_TORCH_THREADS": "0 (automatic)",
    "FASHION_FAISS_THREADS": "1",
    "FASHION_DETECTOR_RUNTIME": "onnx",
    "FASHION_EMBEDDER__RUNTIME": "onnx",
}
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NEXT_SETTING = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*=)")  # a comma that starts the next KEY=


# --- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One configuration of ours: a label and the settings added to the environment."""

    label: str
    env: dict[str, str]
    skipped: str | None = None  # why it is not measured


def parse_env(spec: str) -> dict[str, str]:
    """`KEY=VALUE,KEY=VALUE` -> dict. A comma splits only where the next KEY= begins, so values may hold
    commas (JSON lists); ValueError on a part without `=` or a key that is not an environment name."""
    env: dict[str, str] = {}
    for part in _NEXT_SETTING.split(spec):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not _ENV_KEY.fullmatch(key):
            raise ValueError(f"setting {part!r} is not KEY=VALUE")
        env[key] = value.strip()
    return env


def missing_weights(env: dict[str, str]) -> str | None:
    """Why a configuration cannot run: a *PRETRAINED / *WEIGHTS setting that names a file that is absent.
    Values that are not file names (an open_clip tag such as `laion2b_s34b_b79k`) are left to the service."""
    for key, value in env.items():
        names_file = "/" in value or value.lower().endswith(WEIGHT_SUFFIXES)
        if key.upper().endswith(("PRETRAINED", "WEIGHTS")) and value and names_file:
            if not Path(value).is_file():
                return f"weights file not found: {key}={value}"
    return None


def parse_configs(spec: str) -> list[Config]:
    """`LABEL=KEY=VALUE,...;LABEL=...` -> configurations (`v1=` = the defaults); a configuration whose
    weights file is missing comes back with `skipped` set. ValueError on a bad or repeated label."""
    configs: list[Config] = []
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        label, _, settings = part.partition("=")
        label = label.strip()
        if not _LABEL.fullmatch(label) or label.startswith("peer"):
            raise ValueError(
                f"configuration label {label!r}: use letters, digits, '.', '_', '-', not 'peer...'"
            )
        env = parse_env(settings)
        configs.append(Config(label, env, missing_weights(env)))
    labels = [c.label for c in configs]
    if not configs or len(set(labels)) != len(labels):
        raise ValueError(f"configurations must be named once each, got {labels or 'none'}")
    return configs


def parse_peer_threads(spec: str) -> list[int | None]:
    """`default,1,2` -> [None, 1, 2] (None: PyTorch's default thread count)."""
    threads: list[int | None] = []
    for part in (p.strip() for p in spec.split(",")):
        if part == "default":
            threads.append(None)
        elif part.isdigit() and int(part) >= 1:
            threads.append(int(part))
        else:
            raise ValueError(f"--peer-threads: {part!r} is neither 'default' nor a thread count >= 1")
    if not threads or len(set(threads)) != len(threads):
        raise ValueError(f"--peer-threads must name each peer once, got {spec!r}")
    return threads


def peer_name(threads: int | None) -> str:
    return "peer" if threads is None else f"peer-{threads}t"


# --- data ------------------------------------------------------------------------------------------


def missing_data(data: Path) -> list[Path]:
    needed = [data / "fpi-train" / "styles.csv", data / "fpi-train" / "images", data / "ccp" / "photos"]
    return [path for path in needed if not path.exists()]


def street_photo_paths(ccp: Path, limit: int | None) -> list[tuple[int, Path]]:
    chosen = sorted(ccp_heldout_ids())[:limit]
    return [(photo_id, photo_path(ccp, photo_id)) for photo_id in chosen]


def write_catalogue(products: Sequence[Product], path: Path) -> Path:
    """The catalogue feed both systems index: JSON Lines, absolute image paths, the shop's structured fields
    (colour, gender, style) as attributes, as benchmarks/quality.py writes it."""
    return write_feed(list(products), path, with_labels=True)


# --- statistics ------------------------------------------------------------------------------------


def latency_summary(values: Sequence[float]) -> dict[str, float | int]:
    """p50, p95 (linear interpolation between order statistics), mean, min, max and n, in ms (0.1)."""
    if not values:
        return {"n": 0}
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(array, 50)), 1),
        "p95": round(float(np.percentile(array, 95)), 1),
        "mean": round(float(array.mean()), 1),
        "min": round(float(array.min()), 1),
        "max": round(float(array.max()), 1),
        "n": len(values),
    }


def ratio(ours: float | None, peer: float | None) -> float | None:
    return round(ours / peer, 3) if ours is not None and peer else None


def paired_ratio(ours: dict[Any, list[float]], peer: dict[Any, list[float]]) -> float | None:
    """Median over the keys both have (photos, or blocks) of median(ours) / median(peer)."""
    ratios = [
        statistics.median(ours[key]) / statistics.median(peer[key])
        for key in ours
        if ours[key] and peer.get(key) and statistics.median(peer[key]) > 0
    ]
    return round(statistics.median(ratios), 3) if ratios else None


def schedule(
    photos: int, systems: Sequence[str], block: int, repeats: int
) -> list[tuple[int, int, str, range]]:
    """(repeat, block number, system, photo indices) in run order: the photos in blocks of `block`, each
    block sent to every system in turn, the order of the systems rotated by one from block to block."""
    steps = []
    turn = 0
    for repeat in range(repeats):
        for start in range(0, photos, block):
            k = turn % len(systems)
            for system in [*systems[k:], *systems[:k]]:
                steps.append((repeat, turn, system, range(start, min(start + block, photos))))
            turn += 1
    return steps


# --- servers and requests --------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    kind: str  # "ours" or "peer"
    process: subprocess.Popen[bytes]
    base: str


@dataclass
class Sample:
    photo_id: int
    repeat: int
    block: int
    status: int
    wall_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    garments: int | None = None
    whole_frame: bool | None = None  # ours: one garment that is the whole photo (a product shot, no parser)


def start(
    name: str, kind: str, command: list[str], env: dict[str, str], log_path: Path, ready_s: float
) -> Server:
    port = free_port(HOST)
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--host", HOST, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://{HOST}:{port}"
    log.info("%s: starting (log %s)", name, log_path)
    wait_ready(base, process, ready_s, f"; see {log_path}")
    return Server(name, kind, process, base)


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def post(client: httpx.Client, name: str, photo: bytes) -> tuple[int, float, dict[str, Any]]:
    started = time.perf_counter()
    answer = client.post(
        "/v1/search", files={"image": (name, photo, "image/jpeg")}, data={"top_k": str(TOP_K)}
    )
    wall_ms = (time.perf_counter() - started) * 1000
    return answer.status_code, wall_ms, answer.json() if answer.status_code == 200 else {}


def build_index(config: Config, feed: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    """Build `out` with the real CLI; the manifest's facts, or {"error": reason}."""
    cli = [sys.executable, "-m", "scripts.cli"]
    command = [*cli, "index", "build", "--catalog", str(feed), "--out", str(out), "--no-progress"]
    log.info("%s: building the index of %s", config.label, feed.name)
    started = time.perf_counter()
    built = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if built.returncode != 0:
        lines = [line for line in built.stderr.splitlines() if line.strip()]
        return {"error": f"index build failed: {lines[-1] if lines else built.returncode}"}
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    keys = ("model_name", "dimension", "count", "index_type", "predicted_attributes")
    return {**{key: manifest.get(key) for key in keys}, "build_wall_s": round(seconds, 1)}


# --- the run ---------------------------------------------------------------------------------------


def summarise_system(samples: list[Sample], kind: str) -> dict[str, Any]:
    ok = [s for s in samples if s.status == 200]
    stages: dict[str, list[float]] = defaultdict(list)
    for s in ok:
        for stage, ms in s.timings_ms.items():
            stages[stage].append(float(ms))
    total = statistics.median(stages["total"]) if stages.get("total") else None
    summary: dict[str, Any] = {
        "kind": kind,
        "answers": dict(Counter(str(s.status) for s in samples)),
        "latency_ms": latency_summary([s.wall_ms for s in ok]),
        "server_stage_median_ms": {stage: round(statistics.median(v), 1) for stage, v in stages.items()},
        "server_stage_share_of_total": {
            stage: round(statistics.median(v) / total, 3)
            for stage, v in stages.items()
            if total and stage != "total"
        },
        "http_overhead_median_ms": round(statistics.median(s.wall_ms - s.timings_ms["total"] for s in ok), 1)
        if ok and all("total" in s.timings_ms for s in ok)
        else None,
    }
    garments = [s.garments for s in ok if s.garments is not None]
    if garments:
        summary["garments_per_photo"] = {
            "median": statistics.median(garments),
            "mean": round(statistics.fmean(garments), 2),
            "min": min(garments),
            "max": max(garments),
            "histogram": {str(n): c for n, c in sorted(Counter(garments).items())},
            "whole_frame_fraction": round(statistics.fmean(bool(s.whole_frame) for s in ok), 3),
        }
    return summary


def compare(ours: list[Sample], peer: list[Sample]) -> dict[str, Any]:
    ours_ok, peer_ok = [s for s in ours if s.status == 200], [s for s in peer if s.status == 200]
    a, b = latency_summary([s.wall_ms for s in ours_ok]), latency_summary([s.wall_ms for s in peer_ok])

    def by(samples: list[Sample], key: str) -> dict[Any, list[float]]:
        grouped: dict[Any, list[float]] = defaultdict(list)
        for s in samples:
            grouped[getattr(s, key)].append(s.wall_ms)
        return grouped

    per_block = [
        ratio(statistics.median(ob), statistics.median(pb))
        for block, ob in sorted(by(ours_ok, "block").items())
        if (pb := by(peer_ok, "block").get(block))
    ]
    blocks = [r for r in per_block if r is not None]
    p50 = ratio(a.get("p50"), b.get("p50"))
    return {
        "p50_ratio": p50,
        "p95_ratio": ratio(a.get("p95"), b.get("p95")),
        "mean_ratio": ratio(a.get("mean"), b.get("mean")),
        "paired_per_photo_median_ratio": paired_ratio(by(ours_ok, "photo_id"), by(peer_ok, "photo_id")),
        "per_block_ratio": {"min": min(blocks), "median": statistics.median(blocks), "max": max(blocks)}
        if blocks
        else None,
        "meets_target": p50 is not None and p50 <= TARGET_RATIO,
    }


def measure(
    servers: list[Server], photos: list[tuple[int, bytes]], block: int, repeats: int
) -> dict[str, list[Sample]]:
    clients = {s.name: httpx.Client(base_url=s.base, timeout=REQUEST_TIMEOUT_S) for s in servers}
    samples: dict[str, list[Sample]] = {s.name: [] for s in servers}
    try:
        for server in servers:  # warm-up: first calls allocate; not counted
            for n in range(WARMUP_REQUESTS):
                photo_id, photo = photos[n % len(photos)]
                post(clients[server.name], f"{photo_id:04d}.jpg", photo)
        steps = schedule(len(photos), [s.name for s in servers], block, repeats)
        kinds = {s.name: s.kind for s in servers}
        started = time.monotonic()
        for number, (repeat, turn, name, indices) in enumerate(steps, 1):
            for i in indices:
                photo_id, photo = photos[i]
                status, wall_ms, body = post(clients[name], f"{photo_id:04d}.jpg", photo)
                timings = {k: float(v) for k, v in body.get("timings_ms", {}).items()}
                sample = Sample(photo_id, repeat, turn, status, wall_ms, timings)
                if kinds[name] == "ours" and body:
                    sample.garments, sample.whole_frame = len(body["garments"]), is_whole_frame(body)
                samples[name].append(sample)
            if number % max(1, len(steps) // 10) == 0 or number == len(steps):
                so_far = ", ".join(f"{n} {median_ms(v):.0f} ms" for n, v in samples.items() if v)
                log.info(
                    "step %d/%d, %.0f s; p50 so far: %s",
                    number,
                    len(steps),
                    time.monotonic() - started,
                    so_far,
                )
    finally:
        for client in clients.values():
            client.close()
    return samples


def is_whole_frame(body: dict[str, Any]) -> bool:
    """One garment whose box is the whole upload: the product gate's answer (v3), or no garment found."""
    garments, (width, height) = body["garments"], body["image_size"]
    return len(garments) == 1 and [round(v) for v in garments[0]["box"]] == [0, 0, width, height]


def median_ms(samples: list[Sample]) -> float:
    return statistics.median(s.wall_ms for s in samples)


def versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for package in ("onnxruntime", "pillow", "httpx", "python-multipart", "pydantic"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def cpu_features() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return []
    return [name for name in CPU_FEATURES if name in flags]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def shell(env: dict[str, str], command: str) -> str:
    settings = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"{settings} {command}".strip()


def start_ours(
    config: Config, feed: Path, root: Path, base_env: dict[str, str]
) -> tuple[dict, Server | None]:
    """Build the configuration's index and start its service: (its report entry, the server or None)."""
    report: dict[str, Any] = {"label": config.label, "env": config.env}
    reason = config.skipped
    server = None
    if reason is None:
        env = {**base_env, **config.env}
        index = root / f"index-{config.label}"
        report["index"] = build_index(config, feed, index, env)
        reason = report["index"].pop("error", None)
        report["threads"] = {key: env.get(key, default) for key, default in THREAD_SETTINGS.items()}
    if reason is None:
        command = [sys.executable, "-m", "scripts.cli", "serve", "--index", str(index)]
        try:
            server = start(
                config.label, "ours", command, env, root / f"{config.label}.log", OURS_READY_TIMEOUT_S
            )
        except SystemExit as exc:
            reason = f"service did not start: {exc}"
    if reason is not None:
        log.warning("%s: skipped (%s)", config.label, reason)
        return {**report, "status": "skipped", "reason": reason}, None
    return {**report, "status": "measured"}, server


def same_model_notes(config_reports: list[dict[str, Any]]) -> list[str]:
    """A note for each model that more than one measured configuration serves (e.g. a label "v1" whose
    defaults ship v3)."""
    by_model: dict[str, list[str]] = defaultdict(list)
    for report in config_reports:
        if report["status"] == "measured":
            by_model[report["index"]["model_name"]].append(report["label"])
    return [f"{', '.join(labels)} all serve {model}" for model, labels in by_model.items() if len(labels) > 1]


def start_peer(threads: int | None, feed: Path, root: Path, env: dict[str, str], ready_s: float) -> Server:
    name = peer_name(threads)
    command = [sys.executable, "-m", "benchmarks.peer_server", "--catalog", str(feed), "--cache", str(root)]
    command += [] if threads is None else ["--threads", str(threads)]
    return start(name, "peer", command, env, root / f"{name}.log", ready_s)


def run(args: argparse.Namespace, configs: list[Config], peer_threads: list[int | None]) -> dict[str, Any]:
    load = {"start": load_average()}
    chosen = street_photo_paths(args.data / "ccp", args.limit)
    absent = [path for _, path in chosen if not path.is_file()]
    if absent:
        raise SystemExit(f"realtime: photo not found: {absent[0]} ({len(absent)} missing; pass --data)")
    photos = [(photo_id, path.read_bytes()) for photo_id, path in chosen]
    products = fpi_products(args.data / "fpi-train")[: args.catalogue_limit]
    base_env = {**os.environ, **SERVICE_ENV}
    config_reports: list[dict[str, Any]] = []
    servers: list[Server] = []
    peers: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fashion-realtime-") as tmp:
        root = Path(tmp)
        feed = write_catalogue(products, root / "catalogue.jsonl")
        log.info("%d photos, catalogue of %d fpi validation products", len(photos), len(products))
        try:
            for config in configs:
                report, server = start_ours(config, feed, root, base_env)
                config_reports.append(report)
                servers += [server] if server else []
            if notes := same_model_notes(config_reports):
                log.warning("; ".join(notes))
            if not servers:
                reasons = "; ".join(f"{r['label']}: {r['reason']}" for r in config_reports)
                raise SystemExit(f"realtime: no configuration of ours could be measured: {reasons}")
            for threads in peer_threads:
                servers.append(start_peer(threads, feed, root, os.environ.copy(), args.peer_ready_timeout_s))
                info = httpx.get(f"{servers[-1].base}/info", timeout=30).json()
                peers.append({"name": servers[-1].name, "threads_option": threads, **info})
            load["before_measurement"] = load_average()
            log.info("measuring %s (load average %s)", ", ".join(s.name for s in servers), load_average())
            samples = measure(servers, photos, args.block, args.repeats)
            load["after_measurement"] = load_average()
        finally:
            for server in servers:
                stop(server)
    ours = [s.name for s in servers if s.kind == "ours"]
    peer_names = [peer_name(t) for t in peer_threads]
    ratios = {name: {peer: compare(samples[name], samples[peer]) for peer in peer_names} for name in ours}
    return {
        "benchmark": "realtime",
        "issue": "15, section 4: speed stays real-time",
        "quick": args.limit is not None or args.catalogue_limit is not None,
        "headline": {
            "quoted_against": peer_names[0],
            "ours_p50_over_peer_p50": {name: ratios[name][peer_names[0]]["p50_ratio"] for name in ours},
            "target_at_most": TARGET_RATIO,
        },
        "machine": {**machine_info(), "cpu_features": cpu_features(), "more_versions": versions()},
        "load_average_1_5_15m": load,
        "data": {
            "photos": len(photos),
            "photo_ids": "CCP held-out photos (models.fashion_net.data.ccp_heldout_ids), sorted, first N",
            "catalogue_items": len(products),
            "catalogue": "fpi validation products (benchmarks.quality_data.fpi_products); feed with colour, "
            "gender, style",
        },
        "method": {
            "client": "httpx, one keep-alive connection per system, concurrency 1, multipart image, top_k 10",
            "warmup_requests": WARMUP_REQUESTS,
            "block": args.block,
            "repeats": args.repeats,
            "order": "blocks of photos sent to every system in turn, order rotated by one per block",
            "latency": "client wall-clock per request; p50/p95 by linear interpolation",
            "service_env": SERVICE_ENV,
        },
        "configs": config_reports,
        "notes": same_model_notes(config_reports),
        "peers": peers,
        "systems": {s.name: summarise_system(samples[s.name], s.kind) for s in servers},
        "ratios": ratios,
        "commands": commands(configs, peer_threads),
    }


def commands(configs: list[Config], peer_threads: list[int | None]) -> dict[str, Any]:
    invocation = "python -m benchmarks.realtime " + shlex.join(sys.argv[1:])
    ours = {
        c.label: [
            shell(c.env, "python -m scripts.cli index build --catalog FEED --out INDEX --no-progress"),
            shell(
                {**SERVICE_ENV, **c.env},
                "python -m scripts.cli serve --index INDEX --host 127.0.0.1 --port PORT",
            ),
        ]
        for c in configs
        if not c.skipped
    }
    peers = {
        peer_name(t): "python -m benchmarks.peer_server --catalog FEED --host 127.0.0.1 --port PORT"
        + ("" if t is None else f" --threads {t}")
        for t in peer_threads
    }
    return {"benchmark": invocation.strip(), "ours": ours, "peers": peers}


# --- markdown --------------------------------------------------------------------------------------


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join("" if c is None else str(c) for c in cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    systems, ratios, method = report["systems"], report["ratios"], report["method"]
    quoted = report["headline"]["quoted_against"]
    machine, load = report["machine"], report["load_average_1_5_15m"]
    quick = (
        " **Quick run (--limit / --catalogue-limit): not the figure to quote.**" if report["quick"] else ""
    )
    lines = [
        "# Real-time speed on real street photos: ours vs the open_clip + FAISS peer",
        "",
        f"{report['data']['photos']} held-out CCP street photos, {report['data']['catalogue_items']} fpi "
        f"validation products, HTTP at concurrency 1, {method['repeats']} pass(es), "
        f"{method['warmup_requests']} warm-up requests per system.{quick}",
        "",
        _row(["system", "p50 ms", "p95 ms", "mean ms", "n", f"p50 / {quoted} p50", "paired per-photo ratio",
              f"p50 ratio <= {TARGET_RATIO}"]),
        _row(["---"] * 8),
    ]  # fmt: skip
    for name, summary in systems.items():
        lat, r = summary["latency_ms"], ratios.get(name, {}).get(quoted)
        verdict = None if r is None else ("yes" if r["meets_target"] else "**no**")
        ratios_shown = [None, None] if r is None else [r["p50_ratio"], r["paired_per_photo_median_ratio"]]
        lines.append(_row([name, lat.get("p50"), lat.get("p95"), lat.get("mean"), lat.get("n"), *ratios_shown,
                           verdict]))  # fmt: skip
    lines += [_row([c["label"], f"skipped: {c['reason']}", *[""] * 6])
              for c in report["configs"] if c["status"] == "skipped"]  # fmt: skip
    lines += [
        "",
        "Every ratio (ours / peer; the per-block range shows how much the load moved during the run):",
        "",
    ]
    for name, by_peer in ratios.items():
        for peer, r in by_peer.items():
            blocks = r["per_block_ratio"] or {}
            lines.append(
                f"- {name} / {peer}: p50 {r['p50_ratio']}, p95 {r['p95_ratio']}, mean {r['mean_ratio']}, "
                f"per block {blocks.get('min')} .. {blocks.get('median')} .. {blocks.get('max')}"
            )
    stages = list(dict.fromkeys(stage for s in systems.values() for stage in s["server_stage_median_ms"]))
    lines += ["", "Server stage medians (ms), HTTP overhead (client - server total) and garments per photo:",
              "", _row(["system", *stages, "HTTP overhead", "garments: median (mean, range; whole frame)"]),
              _row(["---"] * (len(stages) + 3))]  # fmt: skip
    for name, summary in systems.items():
        g = summary.get("garments_per_photo")
        garments = (
            f"{g['median']} ({g['mean']}, {g['min']}-{g['max']}; whole frame {g['whole_frame_fraction']})"
            if g
            else None
        )
        stage_ms = [summary["server_stage_median_ms"].get(stage) for stage in stages]
        lines.append(_row([name, *stage_ms, summary["http_overhead_median_ms"], garments]))
    lines += ["", "Systems:", "", *[f"- **Note: {note}.**" for note in report["notes"]]]
    for c in report["configs"]:
        settings = ", ".join(f"{k}={v}" for k, v in c["env"].items()) or "defaults"
        if c["status"] == "skipped":
            lines.append(f"- {c['label']} (skipped): {settings}; {c['reason']}")
            continue
        threads = ", ".join(f"{k}={v}" for k, v in c["threads"].items())
        lines.append(f"- {c['label']}: {settings}; model {c['index']['model_name']}; {threads}")
    for p in report["peers"]:
        lines.append(f"- {p['name']}: {p['model']}, {p['index']}, torch threads {p['torch_threads']} "
                     f"({p['torch_threads_source']}), faiss threads {p['faiss_threads']}")  # fmt: skip
    versions = {**machine["versions"], **machine["more_versions"]}
    lines += [
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({', '.join(machine['cpu_features'])}), "
        f"Python {machine['python']}, {machine['platform']}.",
        f"Load average (1/5/15 min): start {load['start']}, before measuring {load['before_measurement']}, "
        f"after {load['after_measurement']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        f"Method: all servers run at once; the photos go in blocks of {method['block']}, each block to every "
        "system in turn with the order rotated by one per block, so load changes during the run hit every "
        "system alike. Client wall-clock per request (keep-alive httpx, concurrency 1); medians and "
        "linear-interpolated percentiles.",
        "",
        "Commands:",
        "",
        "```",
        report["commands"]["benchmark"],
    ]
    for label, steps in report["commands"]["ours"].items():
        lines += [f"# {label}", *steps]
    for name, command in report["commands"]["peers"].items():
        lines += [f"# {name}", command]
    return "\n".join([*lines, "```", ""])


def main() -> None:
    parser = argument_parser(__doc__, "benchmarks/results/realtime.json", threads=None)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="holds ccp/ and fpi-train/")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos (a quick run)")
    parser.add_argument(
        "--catalogue-limit", type=int, default=None, help="only the first N catalogue products"
    )
    parser.add_argument("--configs", default=None, help='"LABEL=KEY=VALUE,...;LABEL=..." (e.g. "v1=;v3=...")')
    parser.add_argument("--label", default="ours", help="the configuration's name without --configs")
    parser.add_argument(
        "--ours-env", default="", help="KEY=VALUE,... added to ours' environment (no --configs)"
    )
    parser.add_argument(
        "--peer-threads",
        default="default,1",
        help="'default' (PyTorch's) and/or thread counts, the first quoted",
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes over the photos")
    parser.add_argument("--block", type=int, default=10, help="photos per block before the next system")
    parser.add_argument(
        "--peer-ready-timeout-s", type=float, default=1800, help="peer start-up (embeds the catalogue)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    missing = missing_data(args.data)
    if missing:
        raise SystemExit(f"realtime: data not found: {missing[0]} (pass --data, e.g. --data ../shared/data)")
    if args.repeats < 1 or args.block < 1 or (args.limit is not None and args.limit < 1):
        raise SystemExit("realtime: --repeats, --block and --limit must be >= 1")
    try:
        configs = parse_configs(args.configs if args.configs is not None else f"{args.label}={args.ours_env}")
        peer_threads = parse_peer_threads(args.peer_threads)
    except ValueError as exc:
        raise SystemExit(f"realtime: {exc}") from exc
    report = run(args, configs, peer_threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    log.info("wrote %s and %s: %s", args.out, args.out.with_suffix(".md"), json.dumps(report["headline"]))


if __name__ == "__main__":
    main()
