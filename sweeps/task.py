"""A task is what one kind of sweep declares (image classification, object detection, the next one);
everything around its trials, from the flags to the champion, is the one lifecycle of ``sweeps.run``.

A task names its recipe type, its trainable, the data it prepares (and checks) before Ray starts, what
the sweep's run records about that data, its report, and what it does with the winner. Declared in
``sweeps/classification.py`` and ``sweeps/detection.py``; a new task is one more such module and a thin
entry script (``sweeps.cli.main``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Prepared:
    """What a task prepared before Ray starts."""

    data: Any
    """Handed to every trial (``tune.with_parameters``: in Ray's object store once, not per trial)."""
    name: str
    """The data's short name: the default experiment is '<task>-<name>'."""
    summary: dict[str, Any]
    """Facts about the data, recorded as parameters of the sweep's run."""
    line: str
    """One line that says what the data is, printed before the sweep starts."""
    fingerprint: str | None = None
    """Identifies the exact split; a resumed sweep refuses data that no longer gives it."""
    cfg: Any = None
    """The recipe, with what preparing resolved (e.g. downloaded weights); None: unchanged."""
    record: Callable[[], None] = field(default=lambda: None)
    """Logs the data's evidence (files left out, sample images) to the sweep's active run."""


@dataclass(frozen=True)
class Task:
    name: str
    """'classify', 'detect': the default experiment's prefix, and the sweep run's `task` tag."""
    script: str
    """The entry script, for messages: 'python sweeps/<script> --resume DIR'."""
    sweep_prefix: str
    """Sweep (and Tune experiment directory) names: '<prefix>-YYYYmmdd-HHMMSS'."""
    recipe: type
    """The task's ``sweeps.recipe.Recipe`` subclass."""
    default_recipe: Path
    trainable: Callable[[], Callable]
    """Returns the function Ray Tune runs per trial, ``fn(config, **{data_arg: prepared.data})``."""
    data_arg: str
    prepare: Callable[[Any, Callable[[str], None]], Prepared]
    """(recipe, log) -> Prepared: the data and every check that needs it or the models, before Ray starts.
    Raises ``sweeps.recipe.ConfigError`` (its ``problems``) or one of ``sweeps.run.CHECK_ERRORS``."""
    callback: Callable[..., Any]
    """The MLflow trial callback class (``sweeps.trial_runs``), built with the sweep's run ids."""
    report: Callable[[Any, dict, Path, Callable[[str], None]], Any]
    """(recipe, sweep record, output dir, log) -> ``analysis.report.Report`` for the finished sweep."""
    conclude: Callable[[Any, dict, Any], list[str]] = lambda cfg, sweep, report: []
    """After the report: what the task does with the winner (the champion); lines to print."""
    tags: Callable[[], dict[str, str]] = dict
    """Extra tags of the sweep's run (versions of the task's own libraries)."""
    trial_args: Callable[[Any], dict[str, Any]] = field(default=lambda cfg: {})
    """(recipe) -> further arguments of the trainable besides the data (e.g. the epochs it may be stopped at)."""

    def load(self, path: str | Path):
        return self.recipe.load(path, Path(self.default_recipe).parent)
