"""What a baseline's fit leaves (``Fitted``), and the features of a split it is fitted on and scored with:
shared by the baselines (``trainables.baselines``, ``trainables.clip_baselines``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class Fitted:
    """A baseline after its fit: everything ``fit_baseline`` reports."""

    model: torch.nn.Module  # fitted, in eval mode
    dc: dict[str, Any]  # its eval transform's settings
    features: Callable[[torch.Tensor], Any]  # a batch of images -> what the fitted head scores
    scores: Callable[[Any], np.ndarray]  # features -> (N, classes) scores, the largest the prediction
    train: tuple[Any, np.ndarray]  # the training split's features and labels
    fit_time_s: float  # features of the training split plus the fit
    source: str  # where its weights came from, for the run's weights_source


def features_of(samples, transform, features: Callable[[torch.Tensor], Any]) -> tuple[Any, np.ndarray]:  # noqa: ANN001
    """Features of every image of a split through the eval transform, in order, and their labels."""
    from torch.utils.data import DataLoader

    from trainables.data import ImageSamplesDataset

    loader = DataLoader(ImageSamplesDataset(samples, transform), batch_size=256, shuffle=False)
    xs, ys = zip(*((features(x), y.numpy()) for x, y in loader), strict=True)
    x = torch.cat(xs) if isinstance(xs[0], torch.Tensor) else np.concatenate(xs)
    return x, np.concatenate(ys)
