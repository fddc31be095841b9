"""The serving-install benchmark's size accounting: the project's extras expand, markers and extras are
followed through the dependency closure, and the image estimate swaps the CUDA torch for the CPU one."""

from __future__ import annotations

import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from benchmarks.serving_install import closure, image_estimate, project_requirements

PYPROJECT = {
    "project": {
        "name": "fashion-search",
        "dependencies": ["numpy>=1.26", "onnxruntime"],
        "optional-dependencies": {
            "train": ["torch==2.14.1"],
            "open_clip": ["open-clip-torch", "torch==2.14.1"],
            "dev": ["fashion-search[train,open_clip]", "pytest"],
        },
    }
}


def sized(size: int, *requires: str) -> tuple[int, list[Requirement]]:
    return size, [Requirement(text) for text in requires]


SIZES = {
    "numpy": sized(10),
    "onnxruntime": sized(20, "numpy", "coloredlogs; extra == 'logs'"),
    "coloredlogs": sized(1),
    "torch": sized(1000, "nvidia-cublas; python_version >= '3'", "sympy", "triton; extra == 'never'"),
    "nvidia-cublas": sized(500),
    "sympy": sized(30),
    "open-clip-torch": sized(5, "torch", "timm[extra]"),
    "timm": sized(4, "safetensors; extra == 'extra'"),
    "safetensors": sized(2),
    "pytest": sized(3),
}


def test_the_serving_closure_has_no_torch_and_dev_has_both_extras() -> None:
    serving, missing = closure(project_requirements(PYPROJECT, ()), SIZES)
    assert serving == {"numpy": 10, "onnxruntime": 20} and missing == []  # no extra asked for: no coloredlogs
    dev, _ = closure(project_requirements(PYPROJECT, ("dev",)), SIZES)
    assert {"torch", "open-clip-torch", "pytest", "sympy"} <= set(dev)
    assert "safetensors" in dev  # timm[extra] pulls in its extra's requirements
    assert "nvidia-cublas" in dev and "triton" not in dev  # markers decide, extras' markers included


def test_missing_distributions_are_listed_not_counted() -> None:
    needed, missing = closure([Requirement("numpy"), Requirement("not-installed-here")], SIZES)
    assert needed == {"numpy": 10} and missing == ["not-installed-here"]


def test_the_image_before_counts_the_cpu_torch_wheel_without_cuda(tmp_path: Path) -> None:
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("torch/lib.so", b"x" * 2_000_000)
    before = {"bytes": {"distributions": {"torch": 9e9, "nvidia-cublas": 5e9, "triton": 1e9, "numpy": 1e6},
                        "project_files": 1e6}}  # fmt: skip
    after = {"bytes": {"distributions": {"numpy": 1e6, "onnxruntime": 2e6}, "project_files": 1e6}}
    image = image_estimate(before, after, str(tmp_path / "torch-*+cpu-*.whl"))
    assert image["before_left_out"] == ["nvidia-cublas", "triton"]
    assert image["before_cpu_torch_mb"] == 2.0
    assert image["before_mb"] == image["base_mb"] + 2.0 + 1.0 + 2 * 1.0  # torch (CPU) + numpy + sources twice
    assert image["after_mb"] == image["base_mb"] + 3.0 + 2 * 1.0
