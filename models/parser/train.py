"""Train the garment parser on CCP within a wall-clock budget (resumable, CPU-friendly), from random init or
from --init weights (any input size: the network is fully convolutional).

    python -m models.parser.train --data DIR --out FILE --minutes 55 --seed 0 --threads 1

The 90 held-out photo ids (`models.parser.data.heldout_ids`) are never used for training. Photos and class
masks are decoded and resized once into a uint8 cache under --cache-dir; epochs are tensor ops only. Loss:
class-weighted cross-entropy (weights = (median frequency / class frequency) ** 0.5, clipped) plus soft Dice
over the non-background classes. AdamW with a linear warm-up and a cosine schedule over the time budget. A
checkpoint is written every epoch to --work-dir; rerunning the same command resumes from it. The final
(last-epoch) weights are written to --out; the held-out split is only used for logging, never for selection.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from models.parser.data import (
    CACHE_SCALE,
    IGNORE_INDEX,
    Augment,
    augment_sample,
    heldout_ids,
    load_cache,
    normalise,
    subset,
    train_ids,
)
from models.parser.network import ARCHITECTURE, ParserConfig, build_network, load_network, save_weights
from models.parser.taxonomy import PARSER_CLASSES

log = logging.getLogger("models.parser.train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="CCP directory (photos/, masks/, labels.json)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output .safetensors weights file")
    parser.add_argument("--minutes", type=float, default=55.0, help="wall-clock training budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup-frac", type=float, default=0.04)
    parser.add_argument("--dice-weight", type=float, default=0.5)
    parser.add_argument(
        "--bn-momentum",
        type=float,
        default=0.1,
        help="torchvision's MobileNetV3 default 0.01 lags from scratch",
    )
    parser.add_argument(
        "--precise-bn",
        action="store_true",
        help="recompute BatchNorm statistics on whole training photos at the end (measured worse for v1)",
    )
    parser.add_argument("--eval-every", type=int, default=2, help="epochs between held-out mIoU log lines")
    parser.add_argument("--work-dir", type=Path, default=Path("var/parser-train"))
    parser.add_argument("--cache-dir", type=Path, default=Path("var/cache"))
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (timing probes)")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from these parser weights (e.g. v2 at another input size) instead of random init; "
        "ignored when --work-dir holds a checkpoint to resume",
    )
    return parser.parse_args(argv)


def class_weights(masks: np.ndarray, num_classes: int) -> torch.Tensor:
    counts = np.bincount(masks.reshape(-1), minlength=256)[:num_classes].astype(np.float64) + 1.0
    freq = counts / counts.sum()
    weights = np.clip(np.sqrt(np.median(freq) / freq), 0.2, 5.0)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def segmentation_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, dice_weight: float
) -> torch.Tensor:
    ce = F.cross_entropy(logits, labels, weight=weights, ignore_index=IGNORE_INDEX)
    if dice_weight <= 0:
        return ce
    valid = (labels != IGNORE_INDEX).unsqueeze(1)
    probs = logits.softmax(dim=1) * valid
    onehot = F.one_hot(labels.clamp(max=logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2) * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    union = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + 1.0) / (union + 1.0)
    present = onehot.sum(dims)[1:] > 0
    dice_loss = (1 - dice[1:])[present].mean() if present.any() else logits.new_zeros(())
    return ce + dice_weight * dice_loss


def learning_rate(progress: float, base_lr: float, warmup_frac: float) -> float:
    if progress < warmup_frac:
        return base_lr * max(progress / warmup_frac, 0.01)
    span = (progress - warmup_frac) / max(1e-9, 1 - warmup_frac)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, span)))


def set_bn_momentum(network: torch.nn.Module, momentum: float | None) -> None:
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = momentum


@torch.no_grad()
def precise_bn(
    network: torch.nn.Module, images: np.ndarray, config: ParserConfig, batch_size: int = 16
) -> None:
    """Recompute BatchNorm running statistics as exact averages over whole (un-augmented) training photos."""
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
    set_bn_momentum(network, None)  # cumulative average
    network.train()
    for start in range(0, len(images), batch_size):
        pixels = torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
        inputs = F.interpolate(pixels, size=config.input_size, mode="bilinear", antialias=True)
        network(normalise(inputs, config.mean, config.std).contiguous(memory_format=torch.channels_last))
    set_bn_momentum(network, 0.1)
    log.info("precise BN: running statistics recomputed over %d training photos", len(images))


@torch.inference_mode()
def evaluate(
    network: torch.nn.Module, images: np.ndarray, masks: np.ndarray, config: ParserConfig
) -> np.ndarray:
    """Per-class IoU on cached held-out arrays (input resized to the training size; scored at cache size)."""
    network.eval()
    num = len(config.classes)
    confusion = np.zeros((num, num), dtype=np.int64)
    for start in range(0, len(images), 8):
        pixels = torch.from_numpy(images[start : start + 8]).permute(0, 3, 1, 2).float() / 255.0
        target = torch.from_numpy(masks[start : start + 8]).long()
        inputs = F.interpolate(pixels, size=config.input_size, mode="bilinear", antialias=True)
        logits = network(
            normalise(inputs, config.mean, config.std).contiguous(memory_format=torch.channels_last)
        )
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        prediction = logits.argmax(1)
        confusion += np.bincount(
            (target * num + prediction).reshape(-1).numpy(), minlength=num * num
        ).reshape(num, num)
    network.train()
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    size = (args.height, args.width)
    config = ParserConfig(architecture=ARCHITECTURE, classes=PARSER_CLASSES, input_size=size)
    cache = load_cache(
        args.data, args.cache_dir, (round(args.height * CACHE_SCALE), round(args.width * CACHE_SCALE))
    )
    train, held = subset(cache, train_ids()), subset(cache, heldout_ids())
    assert not set(train.ids.tolist()) & set(held.ids.tolist())
    weights = class_weights(train.masks, len(PARSER_CLASSES))
    log.info(
        "train %d photos, held-out %d; input %s; class weights %s",
        len(train.ids),
        len(held.ids),
        size,
        dict(zip(PARSER_CLASSES, np.round(weights.numpy(), 2).tolist(), strict=True)),
    )

    network = build_network(config).to(memory_format=torch.channels_last)
    # torchvision builds MobileNetV3 with BatchNorm momentum 0.01: from random init the running statistics
    # then lag the fast-moving weights by hundreds of steps and eval-mode output is all background for the
    # first epochs (the "learned nothing" symptom of the first probe). 0.1 tracks them.
    set_bn_momentum(network, args.bn_momentum)
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    budget_s = args.minutes * 60.0
    state = {"epoch": 0, "step": 0, "elapsed_s": 0.0}
    checkpoint = args.work_dir / "checkpoint.pt"
    if checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        network.load_state_dict(saved["network"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        random.setstate(saved["python_rng"])
        torch.set_rng_state(saved["torch_rng"])
        log.info(
            "resumed from %s at epoch %d (%.1f min used)", checkpoint, state["epoch"], state["elapsed_s"] / 60
        )
    elif args.init is not None:
        initial, _ = load_network(args.init)
        network.load_state_dict(initial.state_dict())
        network.train()
        log.info("initialised from %s", args.init)

    rng = random.Random()  # state restored through `random` on resume
    rng.setstate(random.getstate())
    aug = Augment()
    network.train()
    started = time.monotonic() - state["elapsed_s"]
    done = False
    while not done:
        order = list(range(len(train.ids)))
        rng.shuffle(order)
        losses: list[float] = []
        epoch_start = time.monotonic()
        for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
            progress = (time.monotonic() - started) / budget_s
            if progress >= 1.0 or (args.max_steps and state["step"] >= args.max_steps):
                done = True
                break
            lr = learning_rate(progress, args.lr, args.warmup_frac)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = [
                augment_sample(train.images[i], train.masks[i], size, aug, rng)
                for i in order[start : start + args.batch_size]
            ]
            pixels = normalise(torch.stack([b[0] for b in batch]), config.mean, config.std)
            labels = torch.stack([b[1] for b in batch])
            logits = network(pixels.contiguous(memory_format=torch.channels_last))
            loss = segmentation_loss(logits, labels, weights, args.dice_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            optimizer.step()
            losses.append(loss.item())
            state["step"] += 1
            if state["step"] % 20 == 0:
                log.info(
                    "epoch %d step %d loss %.4f lr %.2e %.2f s/batch",
                    state["epoch"] + 1,
                    state["step"],
                    np.mean(losses[-20:]),
                    lr,
                    (time.monotonic() - epoch_start) / len(losses),
                )
        if not losses:
            break
        state["epoch"] += 1
        state["elapsed_s"] = time.monotonic() - started
        log.info(
            "epoch %d done: %d steps, loss %.4f, %.0f s, %.1f/%.1f min",
            state["epoch"],
            len(losses),
            np.mean(losses),
            time.monotonic() - epoch_start,
            state["elapsed_s"] / 60,
            args.minutes,
        )
        if done or state["epoch"] % args.eval_every == 0:
            iou = evaluate(network, held.images, held.masks, config)
            log.info(
                "epoch %d held-out mIoU %.4f | %s",
                state["epoch"],
                np.nanmean(iou),
                " ".join(f"{name}={value:.3f}" for name, value in zip(PARSER_CLASSES, iou, strict=True)),
            )
        args.work_dir.mkdir(parents=True, exist_ok=True)
        temporary = checkpoint.with_suffix(".tmp")
        torch.save(
            {
                "network": network.state_dict(),
                "optimizer": optimizer.state_dict(),
                "state": state,
                "python_rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
                "args": vars(args),
            },
            temporary,
        )
        temporary.replace(checkpoint)
        save_weights(network, args.out, config)
    if args.precise_bn:
        precise_bn(network, train.images, config)
        iou = evaluate(network, held.images, held.masks, config)
        log.info(
            "final (precise BN) held-out mIoU %.4f | %s",
            np.nanmean(iou),
            " ".join(f"{name}={value:.3f}" for name, value in zip(PARSER_CLASSES, iou, strict=True)),
        )
    save_weights(network, args.out, config)
    log.info(
        "wrote %s after %d epochs, %d steps, %.1f min",
        args.out,
        state["epoch"],
        state["step"],
        (time.monotonic() - started) / 60,
    )


if __name__ == "__main__":
    main()
