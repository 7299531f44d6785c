"""The Ray Tune search space of a classification sweep, and the known-good configs it starts from."""

from __future__ import annotations

from typing import Any

from ray import tune

from sweeps.config import SweepConfig


def fixed_params(cfg: SweepConfig) -> dict[str, Any]:
    """Trial settings every trial of the sweep shares (TrialConfig fields)."""
    return {
        "weights": cfg.weights,
        "img_size": cfg.img_size,
        "batch_size": cfg.batch_size,
        "max_epochs": cfg.max_epochs,
        # Warm-up of half an epoch, capped so short sweeps still spend most epochs at full rate.
        "warmup_epochs": min(0.5, cfg.max_epochs / 4),
        "seed": cfg.seed,
    }


def param_space(cfg: SweepConfig) -> dict[str, Any]:
    s = cfg.space
    return {
        "arch": tune.choice(list(s.archs)),
        "freeze": tune.choice(list(s.freeze)),
        "augment": tune.choice(list(s.augment)),
        "lr": tune.loguniform(s.lr_min, s.lr_max),
        **fixed_params(cfg),
    }


def starting_points(cfg: SweepConfig) -> list[dict[str, Any]]:
    """One known-good config per architecture, tried first, so every family is in the comparison even in
    a small sweep; Optuna's TPE proposes the rest. Each point uses the space's first freeze strategy and
    augmentation policy and the geometric middle of the learning-rate range."""
    s = cfg.space
    lr = (s.lr_min * s.lr_max) ** 0.5
    points = [{"arch": a, "freeze": s.freeze[0], "augment": s.augment[0], "lr": lr} for a in s.archs]
    return points[: cfg.num_samples]
