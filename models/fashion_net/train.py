"""Train the fashion embedder from random init on a wall-clock budget (resumable, CPU-friendly).

    python -m models.fashion_net.train --clothing DIR --ccp DIR --out FILE --minutes M --seed 0 --threads 1

Data: clothing-dataset photos (held-out 15% per label excluded) and CCP garment crops (held-out photo ids
excluded). Loss: normalised-softmax (CosFace) classifier with label smoothing. AdamW, warm-up + cosine
schedule over the time budget. A checkpoint is written each epoch to the work directory; rerunning the
same command resumes from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from models.fashion_net.data import (
    TRAIN_LABELS,
    Sample,
    cached_pixels,
    ccp_samples,
    clothing_samples,
    split_clothing,
    to_input,
)
from models.fashion_net.embedder import save_weights
from models.fashion_net.network import (
    DEFAULT_DIMENSION,
    DEFAULT_INPUT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CosineClassifier,
    FashionNet,
)

log = logging.getLogger("models.fashion_net.train")
REPO_ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clothing", type=Path, required=True, help="clothing-dataset folder (images.csv)")
    parser.add_argument("--ccp", type=Path, required=True, help="Clothing Co-Parsing folder (photos, masks)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the .safetensors weights")
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "var" / "fashion_net")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--dimension", type=int, default=DEFAULT_DIMENSION)
    parser.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE)
    parser.add_argument("--cache-size", type=int, default=128, help="side of the cached uint8 images")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--margin", type=float, default=0.15)
    parser.add_argument("--scale", type=float, default=16.0)
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    return parser.parse_args(argv)


def augment(
    pixels: torch.Tensor,
    out_size: int,
    generator: torch.Generator,
    mean: torch.Tensor,
    std: torch.Tensor,
    min_area: float | torch.Tensor = 0.45,
) -> torch.Tensor:
    """Batched augmentation of uint8 (n, h, w, 3): random resized crop (area `min_area`-1, a float or one
    per image; aspect 3/4-4/3), small rotation, horizontal flip, brightness/contrast/saturation jitter. No
    hue jitter: colour is a retrieval attribute."""
    n = pixels.shape[0]
    x = pixels.permute(0, 3, 1, 2).float().div_(255.0)

    def uniform(low: float | torch.Tensor, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    area = uniform(min_area, 1.0)
    log_ratio = uniform(math.log(3 / 4), math.log(4 / 3))
    ratio = log_ratio.exp()
    sx = (area * ratio).sqrt().clamp(max=1.0)
    sy = (area / ratio).sqrt().clamp(max=1.0)
    tx = (1 - sx) * uniform(-1.0, 1.0)
    ty = (1 - sy) * uniform(-1.0, 1.0)
    angle = uniform(-0.1, 0.1)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [
            torch.stack([sx * cos * flip, -sy * sin, tx], dim=1),
            torch.stack([sx * sin * flip, sy * cos, ty], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    brightness = uniform(0.75, 1.25).view(n, 1, 1, 1)
    contrast = uniform(0.75, 1.25).view(n, 1, 1, 1)
    saturation = uniform(0.8, 1.2).view(n, 1, 1, 1)
    x = x * brightness
    gray_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - gray_mean) * contrast + gray_mean
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    x = (x - gray) * saturation + gray
    x = x.clamp_(0.0, 1.0)
    return (x - mean) / std


def cosine_lr(base: float, elapsed_s: float, warmup_s: float, budget_s: float) -> float:
    """Linear warm-up (from 2%) over `warmup_s`, then cosine down to 1% at the end of the time budget."""
    if elapsed_s < warmup_s:
        return base * max(0.02, elapsed_s / warmup_s)
    progress = min(1.0, (elapsed_s - warmup_s) / max(1e-6, budget_s - warmup_s))
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def sampling_weights(labels: np.ndarray) -> torch.Tensor:
    """Square-root class balancing: a class with n images is drawn in proportion to sqrt(n)."""
    counts = Counter(labels.tolist())
    return torch.tensor([counts[label] ** -0.5 for label in labels.tolist()], dtype=torch.double)


@torch.inference_mode()
def heldout_precision_at_1(
    model: FashionNet,
    pixels: np.ndarray,
    labels: np.ndarray,
    size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> float:
    """Leave-one-out nearest-neighbour label precision on the held-out clothing images (monitoring only)."""
    model.eval()
    parts = [
        model.embed(to_input(torch.from_numpy(pixels[i : i + 128]), size, mean, std))
        for i in range(0, len(pixels), 128)
    ]
    model.train()
    vectors = torch.cat(parts)
    similarity = vectors @ vectors.t()
    similarity.fill_diagonal_(-2.0)
    nearest = similarity.argmax(dim=1).numpy()
    return float((labels[nearest] == labels).mean())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(args.work_dir / "train.log")],
    )
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    clothing_train, clothing_heldout = split_clothing(clothing_samples(args.clothing), seed=0)
    ccp_train = ccp_samples(args.ccp, heldout=False)
    train: list[Sample] = clothing_train + ccp_train
    log.info(
        "train: %d clothing + %d CCP crops; held-out clothing (monitoring only): %d",
        len(clothing_train),
        len(ccp_train),
        len(clothing_heldout),
    )
    log.info("train labels: %s", dict(Counter(s.label for s in train)))
    class_index = {label: i for i, label in enumerate(TRAIN_LABELS)}
    train_pixels = torch.from_numpy(cached_pixels(train, args.cache_size, args.work_dir / "cache"))
    train_labels = np.array([class_index[s.label] for s in train])
    heldout_pixels = cached_pixels(clothing_heldout, args.input_size, args.work_dir / "cache")
    heldout_labels = np.array([class_index[s.label] for s in clothing_heldout])
    label_tensor = torch.from_numpy(train_labels)
    weights = sampling_weights(train_labels)

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    model = FashionNet(args.dimension)
    head = CosineClassifier(args.dimension, len(TRAIN_LABELS), scale=args.scale, margin=args.margin)
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    decay = [p for n, p in model.named_parameters() if p.ndim > 1] + list(head.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )
    budget_s = args.minutes * 60.0
    warmup_s = min(90.0, 0.05 * budget_s)
    checkpoint = args.work_dir / "checkpoint.pt"
    epoch, elapsed_s, history = 0, 0.0, []
    if checkpoint.is_file() and not args.fresh:
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        epoch, elapsed_s, history = state["epoch"], state["elapsed_s"], state["history"]
        log.info("resumed from %s at epoch %d, %.0f s trained", checkpoint, epoch, elapsed_s)

    steps_per_epoch = len(train) // args.batch_size
    model.train()
    while elapsed_s < budget_s:
        epoch_start = time.monotonic()
        start_elapsed = elapsed_s
        order = torch.multinomial(weights, steps_per_epoch * args.batch_size, True, generator=generator)
        running_loss, running_correct, seen = 0.0, 0, 0
        for step in range(steps_per_epoch):
            elapsed_s = start_elapsed + time.monotonic() - epoch_start
            if elapsed_s >= budget_s:
                break
            lr = cosine_lr(args.lr, elapsed_s, warmup_s, budget_s)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rows = order[step * args.batch_size : (step + 1) * args.batch_size]
            batch = augment(train_pixels[rows], args.input_size, generator, mean, std)
            targets = label_tensor[rows]
            logits = head(model(batch), targets)
            loss = F.cross_entropy(logits, targets, label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running_loss += float(loss.detach()) * len(rows)
            running_correct += int((logits.detach().argmax(1) == targets).sum())
            seen += len(rows)
            if (step + 1) % 25 == 0:
                rate = seen / (time.monotonic() - epoch_start)
                log.info(
                    "epoch %d step %d/%d loss %.3f acc %.3f lr %.2e %.0f img/s elapsed %.0f/%.0f s",
                    epoch + 1, step + 1, steps_per_epoch, running_loss / seen, running_correct / seen, lr,
                    rate, elapsed_s, budget_s,
                )  # fmt: skip
        elapsed_s = start_elapsed + time.monotonic() - epoch_start
        epoch += 1
        p1 = heldout_precision_at_1(model, heldout_pixels, heldout_labels, args.input_size, mean, std)
        history.append(
            {"epoch": epoch, "elapsed_s": round(elapsed_s, 1), "loss": running_loss / max(1, seen),
             "train_acc": running_correct / max(1, seen), "heldout_p_at_1": p1}
        )  # fmt: skip
        log.info("epoch %d done: %s", epoch, json.dumps(history[-1]))
        state = {
            "model": model.state_dict(),
            "head": head.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "epoch": epoch,
            "elapsed_s": elapsed_s,
            "history": history,
            "args": {k: str(v) for k, v in vars(args).items()},
        }
        torch.save(state, checkpoint.with_suffix(".tmp"))
        checkpoint.with_suffix(".tmp").replace(checkpoint)

    training = {
        "seed": args.seed,
        "epochs": epoch,
        "train_seconds": round(elapsed_s),
        "threads": args.threads,
        "train_images": len(train),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, args.out, labels=list(TRAIN_LABELS), input_size=args.input_size, training=training)
    (args.work_dir / "history.json").write_text(json.dumps(history, indent=1))
    log.info("wrote %s after %d epochs, %.0f s", args.out, epoch, elapsed_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
