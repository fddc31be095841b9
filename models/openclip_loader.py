"""Resolve open_clip weights without touching the network unless allowed, then build the model.

Sources: an open_clip pretrained tag, "hf-hub:org/name", "local-dir:/folder", a local checkpoint file, or
an explicit "random" init. With downloads off, a tag or hub id is served only from the local cache; when
it is not there the error names the file and how to provide it. It never falls back to random weights.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.errors import ModelMismatchError, WeightsNotFoundError
from models.files import file_digest
from models.spec import RANDOM_INIT, EmbedderSpec

log = logging.getLogger(__name__)

HF_CONFIG_NAME = "open_clip_config.json"
HF_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ResolvedSource:
    """What to hand to open_clip, and the identity recorded in manifests."""

    model_name: str
    pretrained: str | None
    source_id: str
    transform_overrides: dict[str, Any] = field(default_factory=dict)


def resolve_source(spec: EmbedderSpec) -> ResolvedSource:
    if spec.model_name.startswith("hf-hub:"):
        return _resolve_hub(spec)
    if spec.model_name.startswith("local-dir:"):
        return _resolve_local_dir(spec.model_name.removeprefix("local-dir:"))
    if open_clip.get_model_config(spec.model_name) is None:
        raise ModelMismatchError(
            f"unknown open_clip architecture {spec.model_name!r}; known: {', '.join(open_clip.list_models())}"
        )
    if spec.pretrained is None or not spec.pretrained.strip():
        raise WeightsNotFoundError(
            f"no weights configured for {spec.model_name!r}: set pretrained to an open_clip tag, a local "
            f"checkpoint file, or {RANDOM_INIT!r} (tests only)"
        )
    if spec.pretrained == RANDOM_INIT:
        return ResolvedSource(spec.model_name, None, f"{spec.model_name}/{RANDOM_INIT}:seed={spec.seed}")
    tag_cfg = open_clip.get_pretrained_cfg(spec.model_name, spec.pretrained)
    if tag_cfg:
        return _resolve_tag(spec, tag_cfg)
    return _resolve_file(spec.model_name, Path(spec.pretrained))


def _hub_fix(repo_id: str, filenames: str) -> str:
    return (
        f"on a machine with network run `huggingface-cli download {repo_id} {filenames} --local-dir DIR`, "
        f"copy DIR here and set FASHION_EMBEDDER__MODEL_NAME=local-dir:DIR (or set "
        f"FASHION_EMBEDDER__ALLOW_DOWNLOAD=true where the hub is reachable)"
    )


def _cached_hub_file(repo_id: str, filename: str, cache_dir: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    return found if isinstance(found, str) and os.path.isfile(found) else None


def _resolve_hub(spec: EmbedderSpec) -> ResolvedSource:
    repo_id = spec.model_name.removeprefix("hf-hub:")
    if spec.allow_download:
        return ResolvedSource(spec.model_name, None, spec.model_name)
    config = _cached_hub_file(repo_id, HF_CONFIG_NAME, spec.cache_dir)
    weights = [w for w in HF_WEIGHT_NAMES if _cached_hub_file(repo_id, w, spec.cache_dir)]
    if config is None or not weights:
        missing = HF_CONFIG_NAME if config is None else " or ".join(HF_WEIGHT_NAMES)
        raise WeightsNotFoundError(
            f"{spec.model_name}: {missing} is not in the local Hugging Face cache and downloads are off; "
            + _hub_fix(repo_id, f"{HF_CONFIG_NAME} {HF_WEIGHT_NAMES[0]}")
        )
    resolved = _resolve_local_dir(str(Path(config).parent))
    return ResolvedSource(resolved.model_name, None, spec.model_name)


def _resolve_local_dir(folder: str) -> ResolvedSource:
    path = Path(folder)
    if not (path / HF_CONFIG_NAME).is_file():
        raise WeightsNotFoundError(
            f"local-dir:{folder} must hold {HF_CONFIG_NAME} and a checkpoint; {path / HF_CONFIG_NAME} "
            f"does not exist"
        )
    if not any(any(path.glob(pattern)) for pattern in ("*.safetensors", "*.bin", "*.pth")):
        raise WeightsNotFoundError(
            f"local-dir:{folder} has no checkpoint file (expected one of {', '.join(HF_WEIGHT_NAMES)})"
        )
    return ResolvedSource(f"local-dir:{path}", None, f"local-dir:{path.name}")


def _resolve_tag(spec: EmbedderSpec, tag_cfg: dict[str, Any]) -> ResolvedSource:
    model_cfg = open_clip.get_model_config(spec.model_name) or {}
    if bool(tag_cfg.get("quick_gelu", False)) != bool(model_cfg.get("quick_gelu", False)):
        # open_clip issue #771: the wrong activation gives silently wrong embeddings.
        raise ModelMismatchError(
            f"tag {spec.pretrained!r} was trained with quick_gelu={tag_cfg.get('quick_gelu', False)} but "
            f"architecture {spec.model_name!r} uses quick_gelu={model_cfg.get('quick_gelu', False)}; use the "
            f"matching '-quickgelu' architecture name"
        )
    overrides = {
        key: tag_cfg[src]
        for key, src in (
            ("image_mean", "mean"),
            ("image_std", "std"),
            ("image_interpolation", "interpolation"),
            ("image_resize_mode", "resize_mode"),
        )
        if src in tag_cfg
    }
    source_id = f"{spec.model_name}/{spec.pretrained}"
    if spec.allow_download:
        return ResolvedSource(spec.model_name, spec.pretrained, source_id)
    local = _cached_tag_file(tag_cfg, spec.cache_dir)
    if local is None:
        hub = tag_cfg.get("hf_hub", "")
        repo_id, filename = os.path.split(hub)
        raise WeightsNotFoundError(
            f"weights for {source_id} are not cached locally and downloads are off; "
            + (
                _hub_fix(repo_id, filename or HF_WEIGHT_NAMES[1])
                if hub
                else f"download {tag_cfg.get('url')} and set FASHION_EMBEDDER__PRETRAINED to the file"
            )
            + "; or point FASHION_EMBEDDER__PRETRAINED at the checkpoint file"
        )
    return ResolvedSource(spec.model_name, local, source_id, overrides)


def _cached_tag_file(tag_cfg: dict[str, Any], cache_dir: str | None) -> str | None:
    if tag_cfg.get("hf_hub"):
        repo_id, filename = os.path.split(tag_cfg["hf_hub"])
        names = [filename] if filename else list(HF_WEIGHT_NAMES)
        for name in names:
            found = _cached_hub_file(repo_id, name, cache_dir)
            if found:
                return found
    if tag_cfg.get("url"):
        candidate = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(tag_cfg["url"])
        if candidate.is_file():
            return str(candidate)
    return None


def _resolve_file(model_name: str, path: Path) -> ResolvedSource:
    if not path.is_file():
        raise WeightsNotFoundError(
            f"pretrained {str(path)!r} is neither an open_clip tag of {model_name!r} (tags: "
            f"{', '.join(open_clip.list_pretrained_tags_by_model(model_name)) or 'none'}) nor an existing "
            f"checkpoint file; copy the weights there or set FASHION_EMBEDDER__PRETRAINED"
        )
    if path.suffix == ".safetensors":
        recorded = read_checkpoint_metadata(path).get("architecture")
        if recorded and recorded != model_name:
            raise ModelMismatchError(
                f"checkpoint {path} was saved for architecture {recorded!r}, not {model_name!r}"
            )
    return ResolvedSource(model_name, str(path), f"{model_name}/file:{path.name}#{file_digest(path)[:12]}")


def read_checkpoint_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def save_checkpoint(model: torch.nn.Module, path: Path, architecture: str) -> None:
    """Save an open_clip model as safetensors with the architecture recorded in its metadata."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"architecture": architecture, "format": "open_clip"})


def build_model(spec: EmbedderSpec) -> tuple[Any, Any, ResolvedSource]:
    """Return (model in eval mode, inference transform, where its weights came from) for a spec."""
    source = resolve_source(spec)
    if source.pretrained is None and not source.model_name.startswith(("hf-hub:", "local-dir:")):
        torch.manual_seed(spec.seed)
    log.info("loading open_clip %s (weights: %s)", source.model_name, source.source_id)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="QuickGELU mismatch")
            model, _, preprocess = open_clip.create_model_and_transforms(
                source.model_name,
                pretrained=source.pretrained,
                device=spec.device,
                pretrained_text=False,
                cache_dir=spec.cache_dir,
                **source.transform_overrides,
            )
    except UserWarning as exc:
        raise ModelMismatchError(str(exc)) from exc
    except RuntimeError as exc:
        if "state_dict" in str(exc) or "size mismatch" in str(exc):
            raise ModelMismatchError(
                f"checkpoint {source.source_id} does not fit architecture {source.model_name!r}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        raise
    model.eval()
    return model, preprocess, source


def build_tokenizer(source: ResolvedSource, cache_dir: str | None) -> Any | None:
    """The model's text tokenizer, or None when it cannot be had offline (then there is no text tower)."""
    try:
        return open_clip.get_tokenizer(source.model_name, cache_dir=cache_dir)
    except Exception as exc:  # a hub tokenizer config not in the cache, an unknown tokenizer name
        log.warning("no text tokenizer for %s (%s): text features are off", source.model_name, exc)
        return None
