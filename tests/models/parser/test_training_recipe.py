from __future__ import annotations

import random

import numpy as np
import torch

from models.parser.data import IGNORE_INDEX, Augment, augment_sample, heldout_ids, train_ids
from models.parser.taxonomy import PARSER_CLASSES
from models.parser.train import class_weights, learning_rate, segmentation_loss


def test_split_is_fixed_disjoint_and_complete() -> None:
    held, train = heldout_ids(), train_ids()
    assert len(held) == 90 and len(train) == 810 and not set(held) & set(train)
    assert held == heldout_ids() and held[:3] == [2, 15, 42]


def test_augmented_sample_has_training_shape_and_valid_labels() -> None:
    rng = random.Random(0)
    image = np.random.default_rng(0).integers(0, 256, (50, 35, 3), dtype=np.uint8)
    mask = np.random.default_rng(1).integers(0, len(PARSER_CLASSES), (50, 35), dtype=np.uint8)
    for _ in range(10):
        pixels, labels = augment_sample(image, mask, (40, 28), Augment(), rng)
        assert pixels.shape == (3, 40, 28) and labels.shape == (40, 28) and labels.dtype == torch.long
        assert 0.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0
        values = set(labels.unique().tolist()) - {IGNORE_INDEX}
        assert values <= set(range(len(PARSER_CLASSES)))


def test_loss_weights_and_schedule_behave() -> None:
    masks = np.zeros((2, 10, 10), dtype=np.uint8)
    masks[:, :2, :2] = 2
    weights = class_weights(masks, len(PARSER_CLASSES))
    assert weights[2] > weights[0] and torch.isclose(weights.mean(), torch.tensor(1.0))
    labels = torch.zeros((1, 10, 10), dtype=torch.long)
    labels[0, :5] = 2
    labels[0, 9] = IGNORE_INDEX
    good = torch.full((1, len(PARSER_CLASSES), 10, 10), -5.0)
    good[0, 0, 5:], good[0, 2, :5] = 5.0, 5.0
    bad = torch.zeros_like(good)
    assert float(segmentation_loss(good, labels, weights, 0.5)) < float(
        segmentation_loss(bad, labels, weights, 0.5)
    )
    assert learning_rate(0.0, 1.0, 0.1) < learning_rate(0.1, 1.0, 0.1) == 1.0
    assert learning_rate(1.0, 1.0, 0.1) < 1e-6
