"""A serving install without PyTorch (issue 20): how much it installs and how fast it starts.

- size: the installed size (the `dist.files` of every distribution, via importlib.metadata) of the
  dependency closure of `fashion-search` as `pip install .` makes it, with `[open_clip,train]`, and as it
  was at `--before-rev` (when torch, torchvision and open-clip-torch were dependencies), plus the project's
  own packaged files (code, weights, ONNX exports). Only distributions installed in this environment are
  counted; any missing one is listed.
- start-up: the median wall time of `--runs` fresh processes that create the app with the default models
  (fashion-net v3 embedder + garment parser v3) and answer one search of a street scene on a tiny index:
  "after" with torch, torchvision and open_clip unimportable (a sitecustomize finder, as a plain
  `pip install .` has none); "after, torch runtime" with FASHION_*RUNTIME=torch; "before": the code at
  `--before-rev` (read from git into a temporary folder) with its defaults (ONNX Runtime on a graph exported
  from PyTorch at every start); with `--serving-venv`, also a real `pip install .` run outside the repo.
- Docker image: an estimate, not a build (no Docker here): python:3.11-slim (an assumed size) plus the
  closure above plus the sources in /app; before, with the CPU-only torch wheel the old Dockerfile
  installed first (its unpacked size from `--cpu-torch-wheel`) and none of the CUDA libraries.

    python -m benchmarks.serving_install [--runs 5] [--before-rev 928b224] [--serving-venv DIR]
        [--cpu-torch-wheel '/opt/wheels/torch-*+cpu-*.whl'] [--out benchmarks/results/serving_install.json]
"""

from __future__ import annotations

import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from benchmarks.arguments import argument_parser
from benchmarks.machine import machine_info
from scripts.demo_catalog import generate_catalog

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "indexer", "search", "service", "scripts")
MB = 1e6
BEFORE_REV = "928b224"  # the last commit with torch, torchvision and open-clip-torch as dependencies
BASE_IMAGE, BASE_IMAGE_MB = "python:3.11-slim", 130  # the Dockerfile's FROM; its size is an assumption
Sized = tuple[int, list[Requirement]]  # a distribution's installed bytes and its requirements
VENV_OWN = ("pip", "setuptools")  # installed by `python -m venv` (and in the base image), not by the project
Arm = tuple[Path, Path, dict[str, str]]  # a start-up measurement's python, working directory, environment
BLOCKED = ("torch", "torchvision", "open_clip")  # what `pip install .` (no extras) does not install
# A sitecustomize (loaded by `site` at start-up) with a finder ahead of all others that refuses the blocked
# packages, as if this install had none of them.
BLOCK_TORCH = f"""
import sys


class BlockPyTorch:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: a serving install)", name=name)
        return None


sys.meta_path.insert(0, BlockPyTorch())
"""
SERVE_ONE = """
import sys, time
from pathlib import Path

from fastapi.testclient import TestClient

from search.settings import Settings
from service.app import create_app

index, scene = Path(sys.argv[1]), Path(sys.argv[2])
with TestClient(create_app(Settings(index_dir=index))) as client:
    response = client.post("/v1/search", files={"image": (scene.name, scene.read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    garments = response.json()["garments"]
    assert garments and any(g["matches"] for g in garments), garments
print("torch" in sys.modules)
"""


def write_torch_blocker(directory: Path) -> Path:
    """`directory` with the blocking sitecustomize in it: put it first on PYTHONPATH."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(BLOCK_TORCH, encoding="utf-8")
    return directory


def distribution_sizes(site: Path | None = None) -> dict[str, Sized]:
    """Installed size in bytes and requirements of every distribution in this environment (or in the
    site-packages folder `site`), by name."""
    found: dict[str, Sized] = {}
    found_in = metadata.distributions(path=[str(site)]) if site else metadata.distributions()
    for dist in found_in:
        name = canonicalize_name(dist.metadata["Name"])
        if name in found:
            continue
        size = 0
        for file in dist.files or []:
            try:
                size += Path(str(file.locate())).stat().st_size
            except OSError:
                pass
        found[name] = (size, [Requirement(text) for text in dist.requires or []])
    return found


def closure(roots: list[Requirement], sizes: dict[str, Sized]) -> tuple[dict[str, int], list[str]]:
    """Installed size of each distribution that `roots` need (markers and extras followed), and the names
    of needed distributions that are not installed here."""
    needed: dict[str, int] = {}
    missing: set[str] = set()
    pending = [(requirement, "") for requirement in roots]
    seen: set[tuple[str, str]] = set()
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in sizes:
            missing.add(name)
            continue
        needed[name] = sizes[name][0]
        for wanted in [""] + sorted(requirement.extras):
            if (name, wanted) not in seen:
                seen.add((name, wanted))
                pending += [(child, wanted) for child in sizes[name][1]]
    return needed, sorted(missing)


def project_requirements(pyproject: dict[str, Any], extras: tuple[str, ...]) -> list[Requirement]:
    """The dependencies of `fashion-search[extras]`, the project's own extras expanded."""
    project = pyproject["project"]
    wanted, requirements = list(extras), [Requirement(text) for text in project["dependencies"]]
    while wanted:
        for text in project.get("optional-dependencies", {}).get(wanted.pop(), []):
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
                wanted += sorted(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


def project_size(root: Path, pyproject: dict[str, Any]) -> int:
    """Bytes of the project's own packaged files: its modules and the package data globs."""
    globs = pyproject.get("tool", {}).get("setuptools", {}).get("package-data", {})
    files = {path for package in PACKAGES for path in (root / package).rglob("*.py")}
    for package, patterns in globs.items():
        for pattern in patterns:
            files.update((root / package).glob(pattern))
    return sum(path.stat().st_size for path in files if path.is_file())


def install_size(
    pyproject: dict[str, Any], root: Path, extras: tuple[str, ...], sizes: dict[str, Sized]
) -> dict[str, Any]:
    needed, missing = closure(project_requirements(pyproject, extras), sizes)
    own = project_size(root, pyproject)
    largest = sorted(needed.items(), key=lambda item: -item[1])[:6]
    return {
        "extras": list(extras),
        "bytes": {"distributions": needed, "project_files": own},
        "total_mb": round((sum(needed.values()) + own) / MB, 1),
        "project_files_mb": round(own / MB, 1),
        "distributions": len(needed),
        "largest_mb": {name: round(size / MB, 1) for name, size in largest},
        "not_installed_here": missing,
    }


def wheel_size(pattern: str) -> tuple[str, int] | None:
    """The unpacked size of the first wheel matching `pattern` (a glob), with its file name."""
    for path in sorted(Path("/").glob(pattern.lstrip("/"))):
        with zipfile.ZipFile(path) as wheel:
            return path.name, sum(info.file_size for info in wheel.infolist())
    return None


def cuda_only(name: str) -> bool:
    """PyTorch's CUDA libraries: what PyPI's Linux torch wheel pulls in and its CPU-only wheel does not."""
    return name.startswith(("nvidia-", "cuda-")) or name == "triton"


def image_estimate(before: dict[str, Any], after: dict[str, Any], cpu_torch: str) -> dict[str, Any]:
    """Uncompressed image size: the base plus the install closure plus the sources COPY'd into /app (the
    project's files a second time). Before, the image installed the CPU-only torch wheels first: the CUDA
    libraries are left out and torch counts at the unpacked size of a local CPU wheel."""
    cpu = wheel_size(cpu_torch)
    installed = dict(before["bytes"]["distributions"])
    dropped = sorted(name for name in installed if cuda_only(name))
    for name in dropped:
        del installed[name]
    if cpu is not None:
        installed["torch"] = cpu[1]

    def total(distributions: dict[str, int], own: int) -> float:
        return round(BASE_IMAGE_MB + (sum(distributions.values()) + 2 * own) / MB, 1)

    return {
        "assumption": f"{BASE_IMAGE} is about {BASE_IMAGE_MB} MB uncompressed (amd64; not measured here: no "
        "Docker on this machine); the layers add the install closure as measured above plus the sources "
        "in /app; before, torch is the CPU-only wheel (its CUDA libraries not installed)",
        "base": BASE_IMAGE,
        "base_mb": BASE_IMAGE_MB,
        "before_mb": total(installed, before["bytes"]["project_files"]),
        "after_mb": total(after["bytes"]["distributions"], after["bytes"]["project_files"]),
        "before_cpu_torch_wheel": cpu[0] if cpu else None,
        "before_cpu_torch_mb": round(cpu[1] / MB, 1) if cpu else None,
        "before_left_out": dropped,
    }


def read_revision(revision: str, into: Path) -> Path:
    """The repository's tree at `revision`, unpacked into `into` (git archive; the work tree is untouched)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def environment(root: Path | None, extra_path: Path | None = None, **settings: str) -> dict[str, str]:
    """This environment less FASHION_* settings and PYTHONPATH, then `extra_path` and `root` on the path (none
    for an installed environment) and `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASHION_") and k != "PYTHONPATH"}
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(str(path) for path in (extra_path, root) if path)
    return {**env, **settings}


def venv_size(venv: Path) -> dict[str, Any]:
    """The installed size of the distributions in a virtual environment after a real `pip install .` (the
    project and its dependencies; not VENV_OWN), and whether torch is among them."""
    (site,) = venv.glob("lib/python3*/site-packages")
    sizes = {name: size for name, (size, _) in distribution_sizes(site).items() if name not in VENV_OWN}
    return {
        "venv": str(venv),
        "total_mb": round(sum(sizes.values()) / MB, 1),
        "distributions": len(sizes),
        "torch_installed": "torch" in sizes,
    }


def build_tiny_index(arm: Arm, feed: Path, index: Path) -> None:
    python, root, env = arm
    command = [str(python), "-m", "scripts.cli", "index", "build", "--catalog", str(feed), "--out"]
    command.append(str(index))
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"index build in {root} failed: {done.stderr[-2000:]}")


def serve_once(arm: Arm, index: Path, scene: Path) -> tuple[float, bool]:
    """Wall seconds of a fresh process that starts the app and answers one search; whether it had torch."""
    python, root, env = arm
    started = time.perf_counter()
    command = [str(python), "-c", SERVE_ONE, str(index), str(scene)]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"serving in {root} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout.strip().splitlines()[-1] == "True"


def start_up_times(arms: dict[str, Arm], indexes: dict[str, Path], scene: Path, runs: int) -> dict[str, Any]:
    """`runs` start-ups of each arm, taken in turn (arm 1, arm 2, ..., arm 1, ...) so that a change in the
    machine's load falls on every arm alike."""
    found: dict[str, list[tuple[float, bool]]] = {name: [] for name in arms}
    for _ in range(runs):
        for name, arm in arms.items():
            found[name].append(serve_once(arm, indexes[name], scene))
    return {
        name: {
            "median_s": round(statistics.median(seconds for seconds, _ in results), 2),
            "runs_s": [round(seconds, 2) for seconds, _ in results],
            "torch_imported": all(loaded for _, loaded in results),
        }
        for name, results in found.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, "benchmarks/results/serving_install.json", threads=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--before-rev",
        default=BEFORE_REV,
        help="a revision whose dependencies had PyTorch (default: the last one, before the serving install)",
    )
    parser.add_argument(
        "--cpu-torch-wheel",
        default="/opt/wheels/torch-*+cpu-*.whl",
        help="a CPU-only torch wheel (glob), whose unpacked size stands for torch in the image before",
    )
    parser.add_argument(
        "--serving-venv",
        type=Path,
        help="a virtual environment with a plain `pip install .` (no extras): measured and started too",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    sizes = distribution_sizes()
    after = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="serving-install-") as work:
        work_dir = Path(work)
        before_root = read_revision(args.before_rev, work_dir / "before")
        before = tomllib.loads((before_root / "pyproject.toml").read_text(encoding="utf-8"))
        size = {
            "after_serving": install_size(after, REPO_ROOT, (), sizes),
            "after_open_clip_train": install_size(after, REPO_ROOT, ("open_clip", "train"), sizes),
            "before_serving": install_size(before, before_root, (), sizes),
        }
        log.info("sizes: %s", {name: value["total_mb"] for name, value in size.items()})

        catalog = generate_catalog(work_dir / "catalog", n_items=24, n_scenes=1, size=128)
        blocker = write_torch_blocker(work_dir / "site")
        python = Path(sys.executable)
        on_torch = {"FASHION_EMBEDDER__RUNTIME": "torch", "FASHION_DETECTOR_RUNTIME": "torch"}
        arms: dict[str, Arm] = {
            "after_without_torch": (python, REPO_ROOT, environment(REPO_ROOT, blocker)),
            "after_torch_runtime": (python, REPO_ROOT, environment(REPO_ROOT, None, **on_torch)),
            "before": (python, before_root, environment(before_root)),
        }
        if args.serving_venv:  # the real thing: `pip install .` in a fresh environment, outside the repo
            venv_python = args.serving_venv / "bin" / "python"
            size["after_pip_install_venv"] = venv_size(args.serving_venv)
            arms["after_pip_install_venv"] = (venv_python, work_dir, environment(None))
        indexes = {name: work_dir / f"index-{name}" for name in arms}
        for name, arm in arms.items():
            build_tiny_index(arm, catalog.feed, indexes[name])
        start_up = start_up_times(arms, indexes, catalog.scenes[0], args.runs)
        log.info("start-up: %s", {name: value["median_s"] for name, value in start_up.items()})

    image = image_estimate(size["before_serving"], size["after_serving"], args.cpu_torch_wheel)
    for value in size.values():
        value.pop("bytes", None)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", args.before_rev], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    result = {
        "benchmark": "serving_install",
        "before_rev": commit or args.before_rev,
        "what": "installed size of the dependency closure (MB, 1e6 bytes) and start-up to the first search",
        "start_up_task": "fresh process: create the app with the default models (fashion-net v3 + garment "
        f"parser v3), open a {24}-item index, answer one street-scene search; median of {args.runs}",
        "size": size,
        "start_up": start_up,
        "ratios": {
            "size_before_over_after": round(
                size["before_serving"]["total_mb"] / size["after_serving"]["total_mb"], 1
            ),
            "start_up_before_over_after": round(
                start_up["before"]["median_s"] / start_up["after_without_torch"]["median_s"], 2
            ),
        },
        "docker_image": image,
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    summary = {"size": {k: v["total_mb"] for k, v in size.items()}, "start_up": start_up, "image": image}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
