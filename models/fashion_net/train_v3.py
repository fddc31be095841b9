"""Train fashion-net-v3 (embedding + attribute heads + product/scene gate) on a wall-clock budget.

    python -m models.fashion_net.train_v3 --fpi ../shared/data/fpi-train --clothing ../shared/data/clothing \
        --ccp ../shared/data/ccp --minutes 70 --seed 0 --threads 1

Starts from the v1 embedder's trunk (models/weights/fashion-embedder-v1.safetensors, read-only).
Sources, mixed in every batch: fpi catalogue products (10 % of ids held out for validation), clothing
photos (v1's held-out 15 % excluded), CCP street garment crops and whole CCP photos as "scenes" (the 90
held-out CCP photo ids excluded; tagged photos 1005-1500 are extra scenes). A further seeded 5 % of the
training keys of each source is the calibration part: never trained on, used to fit one softmax
temperature per head at the end.

Loss: CosFace (normalised softmax with margin) on the embedding over the article classes, plus a
label-smoothed cross-entropy per head (ignore_index -100 where a source has no label), weighted. AdamW,
warm-up then cosine over the budget. A checkpoint (model, optimizer, elapsed time) is written each epoch
in --work-dir; rerunning the same command resumes from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from models.fashion_net.data import cached_pixels
from models.fashion_net.fpi import training_parts
from models.fashion_net.multitask import (
    ARTICLE_LABELS,
    DIMENSION,
    HEAD_SOURCES,
    HEADS,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_SIZE,
    MultiTaskNet,
    Part,
    fit_temperatures,
    init_from_v1,
    predict,
    save_multitask,
)
from models.fashion_net.network import CosineClassifier
from models.fashion_net.train import augment, cosine_lr

log = logging.getLogger("models.fashion_net.train_v3")
REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("fpi", "clothing", "ccp", "scene")

LOSS_WEIGHTS = {
    "embedding": 1.0, "category": 0.5, "article": 0.5, "colour": 0.5, "gender": 0.3, "style": 0.2,
    "season": 0.2, "pattern": 0.3, "footwear_type": 0.3, "sleeve_length": 0.3, "gate": 0.5,
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fpi", type=Path, required=True, help="fpi-train folder (styles.csv, images/)")
    parser.add_argument("--clothing", type=Path, required=True, help="clothing-dataset folder (images.csv)")
    parser.add_argument("--ccp", type=Path, required=True, help="Clothing Co-Parsing folder (photos, masks)")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "models" / "weights" / "fashion-net-v3.safetensors"
    )
    parser.add_argument(
        "--init", type=Path, default=REPO_ROOT / "models" / "weights" / "fashion-embedder-v1.safetensors"
    )
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "var" / "train-v3")
    parser.add_argument("--minutes", type=float, default=70.0, help="wall-clock training budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--device", default="auto", help="auto (a CUDA GPU when one is there, else the CPU), cpu or cuda[:N]"
    )
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N images per source (smoke runs)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--head-lr-mult", type=float, default=3.0)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--cache-size", type=int, default=128)
    parser.add_argument("--label-smoothing", type=float, default=0.05)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument(
        "--mix", type=str, default="fpi=0.4,clothing=0.25,ccp=0.2,scene=0.15", help="batch share per source"
    )
    return parser.parse_args(argv)


# --- augmentation -----------------------------------------------------------------------------------


def sampling_weights(parts: dict[str, Part], mix: dict[str, float]) -> torch.Tensor:
    """Each source gets its `mix` share of every batch; within a source, sqrt class balance on article."""
    weights = []
    for source, part in parts.items():
        keys = [labels.get("article") or "-" for labels in part.labels]
        counts = Counter(keys)
        w = np.array([counts[key] ** -0.5 for key in keys], dtype=np.float64)
        weights.append(mix.get(source, 0.0) * w / max(w.sum(), 1e-12))
    return torch.from_numpy(np.concatenate(weights))


# --- evaluation -------------------------------------------------------------------------------------


def evaluate(
    model: MultiTaskNet, pixels: np.ndarray, targets: np.ndarray, sources: np.ndarray, size: int, mean, std
) -> dict[str, float]:
    """Per-head accuracy on the validation images (all labelled sources), gate accuracy per source, and
    leave-one-out article P@1 on the held-out clothing photos."""
    embeddings, logits = predict(model, pixels, size, mean, std)
    result: dict[str, float] = {}
    for column, name in enumerate(HEADS):
        mask = targets[:, column] != IGNORE_INDEX
        if mask.any():
            predicted = logits[name].argmax(1).numpy()
            result[f"{name}_acc"] = round(float((predicted[mask] == targets[mask, column]).mean()), 4)
    gate = list(HEADS).index("gate")
    gate_predicted = logits["gate"].argmax(1).numpy()
    for source in SOURCES:
        mask = (sources == source) & (targets[:, gate] != IGNORE_INDEX)
        if mask.any():
            result[f"gate_acc_{source}"] = round(
                float((gate_predicted[mask] == targets[mask, gate]).mean()), 4
            )
    clothing = np.flatnonzero(sources == "clothing")
    if len(clothing) > 1:
        vectors = embeddings[clothing]
        similarity = vectors @ vectors.t()
        similarity.fill_diagonal_(-2.0)
        labels = targets[clothing, list(HEADS).index("article")]
        result["clothing_p_at_1"] = round(float((labels[similarity.argmax(1).numpy()] == labels).mean()), 4)
    return result


# --- training ---------------------------------------------------------------------------------------


def stack(parts: dict[str, Part], size: int, cache_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 pixels, targets, source names) of all parts concatenated, pixels from the cache."""
    pixels = [cached_pixels(part.samples, size, cache_dir) for part in parts.values() if part.samples]
    targets = [part.targets() for part in parts.values() if part.samples]
    sources = [np.array([part.source] * len(part.samples)) for part in parts.values() if part.samples]
    return np.concatenate(pixels), np.concatenate(targets), np.concatenate(sources)


def label_counts(parts: dict[str, Part]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    all_targets = np.concatenate([part.targets() for part in parts.values() if part.samples])
    for column, (name, labels) in enumerate(HEADS.items()):
        values = Counter(all_targets[:, column].tolist())
        counts[name] = {label: values.get(i, 0) for i, label in enumerate(labels)}
    return counts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    mix = {key: float(value) for key, value in (item.split("=") for item in args.mix.split(","))}

    train, calibration, validation = training_parts(args.fpi, args.clothing, args.ccp, args.seed, args.limit)
    for name, parts in (("train", train), ("calibration", calibration), ("validation", validation)):
        log.info("%s images: %s", name, {source: len(part.samples) for source, part in parts.items()})
    counts = label_counts(train)
    for name in HEADS:
        log.info(
            "train labels %s (%d, from %s): %s",
            name,
            sum(counts[name].values()),
            HEAD_SOURCES[name],
            counts[name],
        )
    cache_dir = args.work_dir / "cache"
    started = time.monotonic()
    train_pixels_np, train_targets_np, train_sources = stack(train, args.cache_size, cache_dir)
    calibration_pixels, calibration_targets, _ = stack(calibration, args.cache_size, cache_dir)
    validation_pixels, validation_targets, validation_sources = stack(validation, INPUT_SIZE, cache_dir)
    log.info("pixel caches ready in %.0f s", time.monotonic() - started)
    train_pixels = torch.from_numpy(train_pixels_np)
    train_targets = torch.from_numpy(train_targets_np)
    min_area = torch.from_numpy(np.where(train_sources == "scene", 0.2, 0.45)).float()
    weights = sampling_weights(train, mix)

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    log.info("training on %s", device)
    model = MultiTaskNet(DIMENSION)
    init_from_v1(model, args.init)
    model.to(device)
    cosface = CosineClassifier(DIMENSION, len(ARTICLE_LABELS), scale=16.0, margin=0.15).to(device)
    trunk_decay = [p for n, p in model.named_parameters() if p.ndim > 1 and not n.startswith("heads.")]
    trunk_no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 and not n.startswith("heads.")]
    head_params = list(model.heads.parameters()) + list(cosface.parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": trunk_decay, "weight_decay": args.weight_decay, "mult": 1.0},
            {"params": trunk_no_decay, "weight_decay": 0.0, "mult": 1.0},
            {"params": head_params, "weight_decay": args.weight_decay, "mult": args.head_lr_mult},
        ],
        lr=args.lr,
    )
    budget_s = args.minutes * 60.0
    warmup_s = min(120.0, 0.05 * budget_s)
    fingerprint = {source: len(part.samples) for source, part in train.items()} | {"heads": list(HEADS)}
    checkpoint = args.work_dir / "checkpoint.pt"
    epoch, elapsed_s, history = 0, 0.0, []
    if checkpoint.is_file() and args.resume:
        state = torch.load(checkpoint, weights_only=False, map_location="cpu")  # set_state needs CPU bytes
        if state["fingerprint"] != fingerprint:
            raise SystemExit(
                f"{checkpoint} was trained on {state['fingerprint']}, not {fingerprint}; use --no-resume"
            )
        model.load_state_dict(state["model"])
        cosface.load_state_dict(state["cosface"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        epoch, elapsed_s, history = state["epoch"], state["elapsed_s"], state["history"]
        log.info("resumed from %s at epoch %d, %.0f s trained", checkpoint, epoch, elapsed_s)

    steps_per_epoch = max(1, len(train_pixels) // args.batch_size)
    article_column = list(HEADS).index("article")
    model.train()
    while elapsed_s < budget_s:
        epoch_start, start_elapsed = time.monotonic(), elapsed_s
        order = torch.multinomial(weights, steps_per_epoch * args.batch_size, True, generator=generator)
        running: dict[str, float] = defaultdict(float)
        steps: dict[str, int] = defaultdict(int)  # batches in which each loss term was present
        seen = 0
        for step in range(steps_per_epoch):
            elapsed_s = start_elapsed + time.monotonic() - epoch_start
            if elapsed_s >= budget_s:
                break
            lr = cosine_lr(args.lr, elapsed_s, warmup_s, budget_s)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["mult"]
            rows = order[step * args.batch_size : (step + 1) * args.batch_size]
            batch = augment(train_pixels[rows], INPUT_SIZE, generator, mean, std, min_area=min_area[rows])
            batch, targets = batch.to(device), train_targets[rows].to(device)
            embedding, logits = model(batch)
            losses: dict[str, torch.Tensor] = {}
            article = targets[:, article_column]
            valid = article != IGNORE_INDEX
            if valid.any():
                cos_logits = cosface(embedding[valid], article[valid])
                losses["embedding"] = F.cross_entropy(cos_logits, article[valid], label_smoothing=0.1)
            for column, name in enumerate(HEADS):
                target = targets[:, column]
                if (target != IGNORE_INDEX).any():
                    losses[name] = F.cross_entropy(
                        logits[name], target, ignore_index=IGNORE_INDEX, label_smoothing=args.label_smoothing
                    )
            loss = sum(LOSS_WEIGHTS[name] * value for name, value in losses.items())
            assert isinstance(loss, torch.Tensor)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(rows)
            running["loss"] += float(loss.detach())
            steps["loss"] += 1
            for name, value in losses.items():
                running[name] += float(value.detach())
                steps[name] += 1
            if (step + 1) % args.log_every == 0:
                rate = seen / (time.monotonic() - epoch_start)
                per_head = " ".join(f"{k} {v / steps[k]:.3f}" for k, v in running.items())
                log.info(
                    "epoch %d step %d/%d %s | lr %.2e %.0f img/s elapsed %.0f/%.0f s",
                    epoch + 1, step + 1, steps_per_epoch, per_head, lr, rate, elapsed_s, budget_s,
                )  # fmt: skip
        elapsed_s = start_elapsed + time.monotonic() - epoch_start
        epoch += 1
        figures = evaluate(
            model, validation_pixels, validation_targets, validation_sources, INPUT_SIZE, mean, std
        )
        rate = seen / max(1e-6, time.monotonic() - epoch_start)
        train_loss = running["loss"] / max(1, steps["loss"])
        history.append(
            {"epoch": epoch, "elapsed_s": round(elapsed_s, 1), "train_loss": round(train_loss, 4),
             "images_per_s": round(rate, 1), "validation": figures}
        )  # fmt: skip
        log.info("epoch %d done: %s", epoch, json.dumps(history[-1]))
        state = {
            "model": model.state_dict(),
            "cosface": cosface.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "epoch": epoch,
            "elapsed_s": elapsed_s,
            "history": history,
            "fingerprint": fingerprint,
            "args": {k: str(v) for k, v in vars(args).items()},
        }
        torch.save(state, checkpoint.with_suffix(".tmp"))
        checkpoint.with_suffix(".tmp").replace(checkpoint)

    model.temperatures = fit_temperatures(
        model, calibration_pixels, calibration_targets, INPUT_SIZE, mean, std
    )
    log.info("temperatures: %s", model.temperatures)
    final = evaluate(model, validation_pixels, validation_targets, validation_sources, INPUT_SIZE, mean, std)
    training = {
        "seed": args.seed,
        "epochs": epoch,
        "train_seconds": round(elapsed_s),
        "threads": args.threads,
        "init": args.init.name,
        "train_images": {source: len(part.samples) for source, part in train.items()},
        "calibration_images": {source: len(part.samples) for source, part in calibration.items()},
        "validation_images": {source: len(part.samples) for source, part in validation.items()},
        "train_labels": {name: sum(values.values()) for name, values in counts.items()},
        "validation": final,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    save_multitask(model.eval(), tmp, training=training)
    tmp.replace(args.out)
    (args.work_dir / "history.json").write_text(json.dumps(history, indent=1))
    (args.work_dir / "result.json").write_text(
        json.dumps({"training": training, "train_label_counts": counts}, indent=1)
    )
    log.info("wrote %s after %d epochs, %.0f s: %s", args.out, epoch, elapsed_s, json.dumps(final))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
