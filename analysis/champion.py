"""A sweep's trained classifier, as whoever serves it gets it: found in MLflow by a model URI, a run id or
"the champion of the latest sweep", and rebuilt from its run's ``checkpoint/best_model.pt`` (a state dict
read with ``torch.load(weights_only=True)``: nothing is unpickled) together with the preprocessing it
was trained with (the eval transform's settings, stored in that checkpoint and in the logged model's
metadata; never re-typed here).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from PIL import Image

from sweeps.credentials import TRACKING_URI_HELP, shown
from trainables.augment import eval_transform
from trainables.contracts import BEST_MODEL_ARTIFACT, CHAMPION_TAG, SWEEP_TAG, load_best_model
from trainables.data import IMAGE_EXTENSIONS, MAX_LISTED, check_image, hidden_entry, to_rgb
from trainables.models import load_model

_CHAMPION = re.compile(r"^(?P<name>.+)@(?P<alias>[\w-]+) \(version (?P<version>\d+)\)$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Classifier:
    model: torch.nn.Module  # eval mode, on the CPU
    arch: str
    classes: list[str]
    preprocessing: dict[str, Any]  # trainables.augment.eval_config of the trained model
    run_id: str  # the trial's MLflow run
    found_as: str  # what --model named, resolved: 'classify-digits version 3 (champion of sweep-...)'

    @property
    def named(self) -> str:
        """What --model named and the trial's run, each once: 'digits version 3 (...), run 3f2a...'."""
        return self.found_as if self.found_as == f"run {self.run_id}" else f"{self.found_as}, run {self.run_id}"

    @property
    def input_size(self) -> int:
        return int(self.preprocessing["input_size"][-1])

    def transform(self):
        return eval_transform(self.preprocessing)


def add_model_flags(p) -> None:
    """--model and --tracking-uri, as every command that serves a sweep's model takes them."""
    p.add_argument(
        "--model",
        help="models:/NAME@ALIAS, models:/NAME/VERSION, models:/<model id>, runs:/RUN_ID or a trial's run id "
        "(default: the champion of the most recent sweep in the tracking store)",
    )
    p.add_argument("--tracking-uri", help=TRACKING_URI_HELP)


def champion_of_latest_sweep(client: mlflow.MlflowClient) -> tuple[str, str]:
    """(registered model URI 'models:/NAME/VERSION', description) of the newest sweep that named a
    champion, in any experiment of this tracking store."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        filter_string=f"tags.`{CHAMPION_TAG}` LIKE '%'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    parents = [r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags]
    if not parents:
        raise LookupError(
            f"no sweep in the tracking store {shown(mlflow.get_tracking_uri())} has a champion yet: run a sweep "
            "(python sweeps/classify.py) or name a model with --model"
        )
    parent = parents[0]
    m = _CHAMPION.match(parent.data.tags[CHAMPION_TAG])
    if m is None:
        raise LookupError(f"sweep run {parent.info.run_id}: unreadable champion tag {parent.data.tags[CHAMPION_TAG]!r}")
    sweep = parent.data.tags.get(SWEEP_TAG, parent.info.run_name)
    return f"models:/{m['name']}/{m['version']}", f"{m['name']} version {m['version']} (champion of {sweep})"


def resolve_run(model: str | None, client: mlflow.MlflowClient) -> tuple[str, str]:
    """(trial run id, description) of what ``model`` names: None (the latest sweep's champion),
    'models:/NAME@ALIAS', 'models:/NAME/VERSION', 'models:/<logged model id>', 'runs:/RUN_ID[/...]' or
    a bare run id."""
    found = ""
    if model is None:
        model, found = champion_of_latest_sweep(client)
    try:
        if model.startswith("models:/"):
            ref = model[len("models:/") :].strip("/")
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
                return mv.run_id, found or f"{name} version {mv.version} (alias {alias})"
            if "/" in ref:
                name, version = ref.rsplit("/", 1)
                mv = client.get_model_version(name, version)
                return mv.run_id, found or f"{name} version {version}"
            logged = mlflow.get_logged_model(ref)
            return logged.source_run_id, f"logged model {ref}"
        if model.startswith("runs:/"):
            run_id = model[len("runs:/") :].split("/")[0]
            return client.get_run(run_id).info.run_id, f"run {run_id}"
        if _RUN_ID.match(model):
            return client.get_run(model).info.run_id, f"run {model}"
    except MlflowException as e:
        where = shown(mlflow.get_tracking_uri())
        raise LookupError(f"--model {model}: not found in {where}: {e.message[:300]}") from None
    raise LookupError(
        f"--model {model!r}: expected models:/NAME@ALIAS, models:/NAME/VERSION, models:/<model id>, "
        "runs:/RUN_ID or a 32-character run id"
    )


def load_classifier(model: str | None = None, client: mlflow.MlflowClient | None = None) -> Classifier:
    """The classifier ``model`` names (see ``resolve_run``), ready for inference on the CPU."""
    client = client or mlflow.MlflowClient()
    run_id, found = resolve_run(model, client)
    with tempfile.TemporaryDirectory() as d:
        try:
            path = Path(client.download_artifacts(run_id, BEST_MODEL_ARTIFACT, d))
        except (MlflowException, OSError):
            raise LookupError(
                f"run {run_id} ({found}) has no {BEST_MODEL_ARTIFACT}: not a finished classification trial of a sweep"
            ) from None
        ckpt = load_best_model(path)
    if ckpt.get("preprocessing") is None:
        raise LookupError(
            f"run {run_id} ({found}): its checkpoint does not record the preprocessing it was trained with "
            "(logged by an earlier version of cvsweep); run the sweep again to serve its models"
        )
    net = load_model(ckpt["arch"], int(ckpt["num_classes"]), int(ckpt["input_size"]), ckpt["model"])
    return Classifier(net, ckpt["arch"], list(ckpt["classes"]), ckpt["preprocessing"], run_id, found)


def find_images(paths: list[str], warn=print) -> list[tuple[str, Path]]:
    """(name to print, file) of every image given: files as they are, directories searched recursively
    for the extensions a sweep reads (``trainables.data.IMAGE_EXTENSIONS``), in sorted order, leaving out
    hidden and system entries as a sweep does (``._photo.jpg``, ``__MACOSX/``; said through ``warn``).
    With one directory, names are relative to it; with several inputs, each name starts with the path it
    was given as."""
    found: list[tuple[str, Path]] = []
    for given in paths:
        p = Path(given).expanduser()
        if p.is_dir():
            files, hidden = [], []
            for f in sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS):
                what = next(filter(None, map(hidden_entry, f.relative_to(p).parts)), None)
                (hidden if what else files).append((f, what))
            if hidden:
                f, what = hidden[0]
                warn(f"{given}: left out {len(hidden)} hidden or system file(s), e.g. {f.relative_to(p)} ({what})")
            if not files:
                raise FileNotFoundError(f"{given}: no image files in it ({', '.join(IMAGE_EXTENSIONS)})")
            prefix = Path() if len(paths) == 1 else Path(given)
            found += [(str(prefix / f.relative_to(p)), f) for f, _ in files]
        elif p.is_file():
            found.append((given, p))
        else:
            raise FileNotFoundError(f"{given}: no such file or directory")
    return found


def check_images(files: list[tuple[str, Path]], skip_bad: bool = False, warn=print) -> list[tuple[str, Path]]:
    """The files that are readable images (each fully decoded once, as the sweep checks its data): one
    that is not stops everything with all such files named, unless ``skip_bad`` (then each is named in
    a warning and left out). At least one must be left."""
    bad = [(i, name, problem) for i, (name, path) in enumerate(files) if (problem := check_image(str(path))[0])]
    if bad and not skip_bad:
        listed = "; ".join(f"{name}: {problem}" for _, name, problem in bad[:MAX_LISTED])
        more = f" (and {len(bad) - MAX_LISTED} more)" if len(bad) > MAX_LISTED else ""
        raise ValueError(
            f"{len(bad)} of {len(files)} files are not readable images: {listed}{more}. "
            "Fix or remove them, or pass --skip-bad-images."
        )
    for _, name, problem in bad:
        warn(f"skipped {name}: {problem}")
    skipped = {i for i, _, _ in bad}
    good = [f for i, f in enumerate(files) if i not in skipped]
    if not good:
        raise ValueError(f"none of the {len(files)} files is a readable image: nothing to do")
    return good


def open_rgb(path: Path) -> Image.Image:
    """An image file as the trials saw theirs (``trainables.data.to_rgb``: EXIF rotation, modes, alpha)."""
    with Image.open(path) as im:
        return to_rgb(im)
