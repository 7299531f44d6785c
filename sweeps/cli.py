"""The command line of every sweep script: the flags all tasks share, a task's own flags, and each flag's
recipe key, from one table (``Flag``). ``--help`` answers without importing torch, Ray or MLflow: the task
module (``Command.task``) is imported only once the flags are read."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Flag:
    """One command-line flag and the recipe key it overrides."""

    name: str  # "--max-epochs"
    group: str  # its section in --help
    where: str | None  # "settings" (a top-level recipe key), "space" (a trial parameter), None: not a recipe key
    key: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)  # argparse's add_argument
    value: Callable[[Any], Any] = lambda v: v  # the flag's value -> the recipe's

    @property
    def dest(self) -> str:
        return self.name[2:].replace("-", "_")


def _flag(name: str, group: str, where: str | None, key: str | None, value=lambda v: v, **kwargs) -> Flag:
    return Flag(name, group, where, key, kwargs, value)


def lr_range_flag(key: str, what: str) -> Flag:
    """--lr-range MIN MAX: a log-uniform range of the task's learning-rate parameter."""
    to_range = lambda v: {"loguniform": list(v)}  # noqa: E731
    kwargs = dict(nargs=2, type=float, metavar=("MIN", "MAX"), help=f"log-uniform range of {what}")
    return _flag("--lr-range", SPACE, "space", key, to_range, **kwargs)


DATA, SPACE, SWEEP, WHERE = "data", "search space (each replaces the recipe's axis)", "sweep", "where things go"


def common_flags(task: str, checkpoint: str, set_examples: str) -> list[Flag]:
    """The flags every sweep script has. ``task``: the experiment prefix; ``checkpoint``: what a retried
    trial continues from; ``set_examples``: --set's, in the task's own keys."""
    from sweeps.credentials import TRACKING_URI_HELP
    from sweeps.recipe import SEARCH_ALGORITHMS

    return [
        _flag(
            "--search",
            SWEEP,
            "settings",
            "search",
            choices=SEARCH_ALGORITHMS,
            help="Optuna TPE, random, or every combination",
        ),
        _flag("--num-samples", SWEEP, "settings", "num_samples", type=int, help="number of trials"),
        _flag("--max-epochs", SWEEP, "settings", "max_epochs", type=int, help="epochs per trial"),
        _flag(
            "--no-asha",
            SWEEP,
            "settings",
            "asha",
            lambda v: False,
            action="store_true",
            help="run every trial to --max-epochs (no early stopping)",
        ),
        _flag(
            "--grace-period",
            SWEEP,
            "settings",
            "grace_period",
            type=int,
            help="epochs before ASHA may stop a trial",
        ),
        _flag(
            "--cpus-per-trial",
            SWEEP,
            "settings",
            "cpus_per_trial",
            type=float,
            help="CPU cores per trial: its torch threads, and all but one of them DataLoader workers "
            "(unless the recipe sets num_workers)",
        ),
        _flag(
            "--gpus-per-trial",
            SWEEP,
            "settings",
            "gpus_per_trial",
            type=float,
            help="GPUs per trial, fractions share a GPU",
        ),
        _flag(
            "--max-failures",
            SWEEP,
            "settings",
            "max_failures",
            type=int,
            help=f"retries of a crashed trial, from {checkpoint}",
        ),
        _flag("--seed", SWEEP, "settings", "seed", type=int, help="seed of the data split, the search and the trials"),
        _flag(
            "--set",
            SWEEP,
            None,
            None,
            action="append",
            metavar="KEY=VALUE",
            help=f"any recipe setting or space axis, the value in YAML: {set_examples} (repeatable)",
        ),
        _flag(
            "--experiment",
            WHERE,
            "settings",
            "experiment",
            help=f"MLflow experiment name (default: {task}-<data name>)",
        ),
        _flag("--tracking-uri", WHERE, "settings", "tracking_uri", help=TRACKING_URI_HELP),
        _flag(
            "--storage-path",
            WHERE,
            "settings",
            "storage_path",
            help="Ray Tune results and checkpoints, one directory per sweep (default: ~/ray_results)",
        ),
        _flag(
            "--output-dir",
            WHERE,
            "settings",
            "output_dir",
            help="comparison report directory (report.html/.md, comparison.csv), under <experiment>/<sweep>",
        ),
        _flag(
            "--address",
            WHERE,
            "settings",
            "address",
            help="Ray cluster to join ('auto' on a cluster node); default: $RAY_ADDRESS, else a `ray start` instance "
            "on this machine, else a Ray of the sweep's own that listens on 127.0.0.1 only",
        ),
        _flag(
            "--resume",
            WHERE,
            None,
            None,
            nargs="?",
            const="",
            metavar="SWEEP_DIR",
            help="continue an interrupted sweep from its directory (printed when it started and when it stopped): "
            "the same MLflow runs, finished trials kept, unfinished ones from their last checkpoint. Alone, or "
            "with a storage path: the newest interrupted sweep there (default ~/ray_results), the others listed. "
            "Only --address and --verbose may be given with it.",
        ),
        _flag(
            "--verbose",
            SWEEP,
            None,
            None,
            action="store_true",
            help="Tune's console in full: a line per trial result with its settings, and its snapshot warnings "
            "(default: Tune's status table only, every 30 s and at the end)",
        ),
    ]


@dataclass(frozen=True)
class Command:
    """A sweep script: its doc (the first paragraph is --help's description, the rest its epilog), its task
    module (with a ``TASK``), default recipe and flags."""

    prog: str
    doc: str
    task: str  # "sweeps.classification"
    default_recipe: Path
    flags: list[Flag]
    smoke_help: str
    set_examples: str  # --set's help, in the task's recipe keys
    checkpoint: str = "its last checkpoint"
    ready: Callable[[], str | None] = lambda: None  # before anything: an error message, or None

    def all_flags(self) -> list[Flag]:
        return [*self.flags, *common_flags(self.task_name, self.checkpoint, self.set_examples)]

    @property
    def task_name(self) -> str:
        return self.prog.removeprefix("python sweeps/").removesuffix(".py")


def parse_args(command: Command, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=command.prog,
        description=command.doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=command.doc.split("\n\n", 1)[1] + "\nFlags left out keep the recipe's value.",
        argument_default=argparse.SUPPRESS,  # only flags the user gave override the recipe
    )
    recipe = command.default_recipe
    p.add_argument(
        "--config",
        metavar="YAML",
        default=str(recipe),
        help=f"sweep recipe: search space, search mode, data, resources (default: {recipe.relative_to(PROJECT_ROOT)}; "
        f"others in {recipe.parent.relative_to(PROJECT_ROOT)}/)",
    )
    flags = command.all_flags()
    groups = {g: p.add_argument_group(g) for g in (DATA, SPACE, SWEEP, WHERE) if any(f.group == g for f in flags)}
    smoke_at = next(i for i, f in enumerate(flags) if f.name == "--set") + 1
    for i, f in enumerate(flags):
        if i == smoke_at:
            groups[SWEEP].add_argument(
                "--smoke-test", action="store_true", help=f"{command.smoke_help}; what other flags set is kept"
            )
        groups[f.group].add_argument(f.name, **f.kwargs)
    return p.parse_args(argv)


def config_from_args(command: Command, a: argparse.Namespace):
    """The recipe, with the flags the user gave on top. Raises ConfigError naming the file or flag."""
    from sweeps.recipe import ConfigError
    from trainables.registry import unknown_name_message

    task = load_task(command)
    cfg = task.load(a.config)
    given = vars(a)
    out: dict[str, dict] = {"settings": {}, "space": {}}
    flags: dict[str, str] = {}
    for f in command.all_flags():
        if f.where is not None and f.dest in given:
            out[f.where][f.key] = f.value(given[f.dest])
            flags[f.key] = f.name
    # Every --set is read before any is refused, and the recipe still checks the good ones: one run shows all.
    problems: list[str] = []
    settings = task.recipe.settings()
    known = list(dict.fromkeys([*settings, *task.recipe.space_keys()]))  # max_epochs, seed are both: once
    for item in given.get("set", []):
        try:
            key, value = parse_set(item)
        except ConfigError as e:
            problems += e.problems
            continue
        if key not in known:
            problems.append(f"--set {item}: {unknown_name_message('setting or trial parameter', key, known)}")
            continue
        # A key that is both (max_epochs, seed) is one the sweep sets for every trial: a top-level setting.
        out["settings" if key in settings else "space"][key] = value
        flags[key] = f"--set {key}"
    try:
        cfg = cfg.with_overrides(out["settings"], out["space"], flags)
    except ConfigError as e:
        problems += e.problems
    if problems:
        raise ConfigError.of(problems)
    if not given.get("smoke_test"):
        return cfg
    shrunk = cfg.shrunk()
    if kept := [flag for key, flag in flags.items() if key in shrunk]:
        print(f"note: --smoke-test keeps what {', '.join(kept)} set; the rest of the recipe is shrunk")
    return cfg.smoke(given=flags)


def parse_set(item: str) -> tuple[str, object]:
    """'KEY=VALUE' -> (key, YAML value). Which keys exist is checked by ``config_from_args``."""
    import yaml

    from sweeps.recipe import ConfigError

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set mixup=0.2")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:  # PyYAML's message spans lines: its problem, and where in KEY=VALUE, on one
        mark = getattr(e, "problem_mark", None)
        at = f" (at character {len(key) + 1 + mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"--set {item}: the value is not valid YAML: {problem}{at}") from None


def load_task(command: Command):
    return importlib.import_module(command.task).TASK


def main(command: Command, argv: list[str] | None = None) -> int:
    if argv is None:  # this process's own command line: a password or token on it moves to the environment
        from sweeps.credentials import without_credentials_on_command_line

        without_credentials_on_command_line()
    if error := command.ready():
        print(f"error: {error}", file=sys.stderr)
        return 2
    args = parse_args(command, argv)
    if "resume" in args:
        others = [k for k in vars(args) if k not in ("resume", "address", "config", "verbose")]
        others += ["config"] if args.config != str(command.default_recipe) else []
        if others:
            flags = ", ".join("--" + k.replace("_", "-") for k in others)
            print(f"error: --resume continues a sweep as it was set up; {flags} cannot change it", file=sys.stderr)
            return 2
        from sweeps.run import resume_sweep

        verbose = getattr(args, "verbose", False)
        where = Path(args.resume) if args.resume else None
        return resume_sweep(load_task(command), where, getattr(args, "address", None), verbose)
    from sweeps.recipe import ConfigError

    try:
        cfg = config_from_args(command, args)
    except ConfigError as e:  # a bad recipe or flag value: say which, before anything expensive starts
        print(f"error: {e}", file=sys.stderr)
        return 2
    from sweeps.run import run_sweep

    return run_sweep(load_task(command), cfg, PROJECT_ROOT, getattr(args, "verbose", False))
