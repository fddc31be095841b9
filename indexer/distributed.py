"""Distributed embedding of large catalogues with Ray: contiguous shards, resumable, same output as the
single-process build.

`distributed_describer(...)` returns a `describe` for `build_index(..., describe=...)`. The items are split
into contiguous shards (indexer/shards.py); Ray tasks run `describe_items` on them, at most one per worker
at a time, each worker process building the models once; results are put back in feed order, so the output
equals the single-process build's. Every finished shard is saved atomically in `work_dir` under a key, so a
re-run after a crash recomputes only missing, changed or damaged shards.

Ray is imported lazily; nothing else in the project needs it. Without an address a local Ray is started and
shut down again; with one (`auto`, `HOST:6379`, `ray://HOST:10001`) that cluster is used, and its nodes need
this package installed and the feed's image paths readable under the same names. The shard files are
written by the driver, so `work_dir` needs to be local to the driver only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from indexer.build import BuildOptions, describe_items
from indexer.feed import CatalogItem
from indexer.publish import BuildError
from indexer.shards import (
    ModelIdentity,
    Shard,
    ShardResult,
    assemble_shards,
    default_shard_count,
    load_shard,
    save_shard,
    shard_key,
    split_shards,
)
from models.attributes.extractor import AttributeExtractor
from models.embedder import Embedder

log = logging.getLogger(__name__)
_SHARD_NAME = re.compile(r"shard-(\d{5})\.npz")
MakeModels = Callable[[], tuple[Embedder, AttributeExtractor]]
Describe = Callable[[list[CatalogItem]], ShardResult]


# Worker side. Ray reuses a worker process for many tasks: each keeps the models it last built, so a worker
# builds them once per run (and once per test module), not once per shard.
_MODELS: dict[str, tuple[Embedder, AttributeExtractor]] = {}


def _models(make_models: MakeModels, token: str) -> tuple[Embedder, AttributeExtractor]:
    if token not in _MODELS:
        _MODELS.clear()  # one set of models per process: another factory replaces the old one
        _MODELS[token] = make_models()
    return _MODELS[token]


def probe_models(make_models: MakeModels, token: str) -> ModelIdentity:
    """Ray task: build (or reuse) the models and say what they are."""
    embedder, extractor = _models(make_models, token)
    return ModelIdentity(embedder.name, embedder.dimension, tuple(extractor.predicted_groups))


def describe_shard(
    make_models: MakeModels, token: str, options: BuildOptions, items: list[CatalogItem]
) -> tuple[ModelIdentity, ShardResult]:
    """Ray task: `describe_items` on one shard, with the identity of the models that did it."""
    embedder, extractor = _models(make_models, token)
    identity = ModelIdentity(embedder.name, embedder.dimension, tuple(extractor.predicted_groups))
    return identity, describe_items(items, embedder, extractor, dataclasses.replace(options, progress=False))


@contextlib.contextmanager
def ray_session(
    address: str | None, num_cpus: int | None, runtime_env: dict[str, Any] | None = None
) -> Iterator[Any]:
    """Yield the `ray` module, connected: reuse a running session, else connect to `address`, else start
    a quiet local Ray (no dashboard, no usage reporting) and shut it down afterwards."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING)
        else:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                logging_level=logging.WARNING,
                runtime_env=runtime_env,
            )
    except Exception as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise BuildError(f"could not start {where}: {type(exc).__name__}: {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def distributed_describer(
    make_models: MakeModels,
    options: BuildOptions,
    work_dir: Path,
    address: str | None = None,
    shards: int | None = None,
    num_cpus: int | None = None,
    *,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    runtime_env: dict[str, Any] | None = None,
    expected_model: str | None = None,
) -> DistributedDescriber:
    """A `describe` for `build_index` that runs on Ray. `make_models` must be picklable (e.g. the
    composition root's `search.runtime.ModelFactory`); each worker process calls it once and keeps the
    models. `num_cpus`: CPUs of the local Ray, or at most this many CPUs of a cluster. Resuming reuses
    shards only under the same split: pass the same `shards`. `expected_model`: the driver's
    `embedder.name` (what the manifest will record); workers that load another model fail the build
    before any shard is computed."""
    if shards is not None and shards < 1:
        raise BuildError(f"shards must be >= 1, got {shards}")
    if cpus_per_worker <= 0 or gpus_per_worker < 0:
        raise BuildError(
            f"cpus_per_worker must be > 0 and gpus_per_worker >= 0, got "
            f"{cpus_per_worker} and {gpus_per_worker}"
        )
    return DistributedDescriber(
        make_models,
        options,
        work_dir,
        address=address,
        shards=shards,
        num_cpus=num_cpus,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        runtime_env=runtime_env,
        expected_model=expected_model,
    )


@dataclass
class DistributedDescriber:
    """Callable as `describe(items)`; see `distributed_describer`."""

    make_models: MakeModels
    options: BuildOptions
    work_dir: Path
    address: str | None = None
    shards: int | None = None
    num_cpus: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    runtime_env: dict[str, Any] | None = None
    expected_model: str | None = None
    identity: ModelIdentity | None = None  # the workers' models, known after a call

    def __call__(self, items: list[CatalogItem]) -> ShardResult:
        if not items:
            return [], np.zeros((0, 0), np.float32), []
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with ray_session(self.address, self.num_cpus, self.runtime_env) as ray:
            workers = self._worker_count(ray)
            shards = split_shards(items, self.shards or default_shard_count(len(items), workers))
            self._remove_leftovers(len(shards))
            tasks = _Tasks(ray, self)
            identity = self.identity = tasks.probe()
            if self.expected_model is not None and identity.name != self.expected_model:
                raise BuildError(
                    f"the Ray workers load {identity}, but this build is for {self.expected_model}; "
                    f"give the workers the same model settings"
                )
            keys = [shard_key(shard, identity, self.options) for shard in shards]
            results: dict[int, ShardResult] = {}
            for shard in shards:
                path = self.work_dir / shard.file_name
                if (stored := load_shard(path, keys[shard.index], shard, identity.dimension)) is not None:
                    results[shard.index] = stored
            pending = [shard for shard in shards if shard.index not in results]
            log.info(
                "%d/%d shards already done in %s; computing %d on up to %d worker(s) with %s",
                len(results),
                len(shards),
                self.work_dir,
                len(pending),
                workers,
                identity,
            )
            if pending:
                tasks.run(pending, keys, results, workers, len(items))
        return assemble_shards(shards, results, identity.dimension)

    def _worker_count(self, ray: Any) -> int:
        resources = ray.cluster_resources()
        cpus = resources.get("CPU", 1.0)
        if self.num_cpus:
            cpus = min(cpus, self.num_cpus)
        count = int(cpus // self.cpus_per_worker)
        if self.gpus_per_worker:
            count = min(count, int(resources.get("GPU", 0.0) // self.gpus_per_worker))
        if count < 1:
            raise BuildError(
                f"the Ray cluster offers {resources.get('CPU', 0)} CPU(s) and {resources.get('GPU', 0)} "
                f"GPU(s): not enough for one worker of {self.cpus_per_worker} CPU(s) and "
                f"{self.gpus_per_worker} GPU(s)"
            )
        return count

    def _remove_leftovers(self, n_shards: int) -> None:
        for path in self.work_dir.iterdir():
            match = _SHARD_NAME.fullmatch(path.name)
            if (match and int(match.group(1)) >= n_shards) or path.name.startswith(".shard-"):
                log.info("removing %s (not part of this split)", path)
                path.unlink(missing_ok=True)


class _Tasks:
    """The Ray tasks of one run: a model probe, then the shards, at most one per worker at a time."""

    def __init__(self, ray: Any, owner: DistributedDescriber) -> None:
        try:
            token = hashlib.sha256(ray.cloudpickle.dumps(owner.make_models)).hexdigest()
        except Exception as exc:
            raise BuildError(f"make_models must be picklable for Ray workers: {_reason(exc)}") from exc
        self.ray, self.owner = ray, owner
        self.identity: ModelIdentity | None = None
        self._args = (ray.put(owner.make_models), token)
        resources = {"num_cpus": owner.cpus_per_worker, "num_gpus": owner.gpus_per_worker}
        self._probe = ray.remote(probe_models).options(**resources, max_retries=1)
        self._describe = ray.remote(describe_shard).options(**resources, max_retries=1)

    def probe(self) -> ModelIdentity:
        try:
            identity: ModelIdentity = self.ray.get(self._probe.remote(*self._args))
        except Exception as exc:
            raise BuildError(f"a Ray worker could not load the models: {_reason(exc)}") from exc
        self.identity = identity
        return identity

    def run(
        self,
        pending: list[Shard],
        keys: list[str],
        results: dict[int, ShardResult],
        workers: int,
        n_items: int,
    ) -> None:
        """Save each shard as it arrives. After a failure no new shard starts; the running ones finish and
        are saved (for the resume), then BuildError names the failed shard."""
        queue, running = deque(pending), dict[Any, Shard]()
        failures: list[str] = []
        started, computed = time.monotonic(), 0
        done_before = sum(len(result[0]) + len(result[2]) for result in results.values())
        progress = self.owner.options.progress
        with tqdm(
            total=n_items, initial=done_before, unit="item", desc="embedding", disable=not progress
        ) as bar:
            while queue or running:
                while queue and not failures and len(running) < workers:
                    shard = queue.popleft()
                    running[self._describe.remote(*self._args, self.owner.options, shard.items)] = shard
                if not running:
                    break
                ready, _ = self.ray.wait(list(running), num_returns=1)
                shard = running.pop(ready[0])
                try:
                    identity, result = self.ray.get(ready[0])
                    if identity != self.identity:
                        raise BuildError(f"computed by {identity}, but the run uses {self.identity}")
                except Exception as exc:
                    failures.append(f"{shard} failed: {_reason(exc)}")
                    log.error("%s", failures[-1])
                    continue
                save_shard(self.owner.work_dir / shard.file_name, keys[shard.index], result)
                results[shard.index] = result
                computed += len(shard.items)
                bar.update(len(shard.items))
                rate = computed / max(time.monotonic() - started, 1e-9)
                log.info("%s done: %d/%d shards, %.1f items/s", shard, len(results), shard.total, rate)
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise BuildError(
                f"{failures[0]}{more}; the {len(results)} finished shard(s) stay in {self.owner.work_dir} "
                f"for a resume"
            )


def _reason(exc: BaseException) -> str:
    """The worker's own exception when Ray wrapped one, else the first line of Ray's message."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"
