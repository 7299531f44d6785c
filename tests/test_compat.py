"""The third-party internals each compatibility module relies on are where it expects them, and the
installed libraries are the versions it was checked against. A failure names the library, the internal
name and the installed version: re-read that internal in the new version, then widen ``CHECKED``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from analysis import mlflow_compat, torch_compat
from sweeps import optuna_compat, ray_compat
from trainables import ultralytics_compat

REPO = Path(__file__).resolve().parent.parent
COMPAT = (ray_compat, optuna_compat, torch_compat, mlflow_compat, ultralytics_compat)
HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
# Not importorskip: importing Ultralytics at collection would change the whole test session
# (trainables.ultralytics_compat.load_ultralytics says how); tests import it through load_ultralytics.
needs_ultralytics = pytest.mark.skipif(
    not HAS_ULTRALYTICS, reason='detection needs the [detect] extra: pip install -e ".[detect]"'
)


def moved(library: str, name: str, compat: ModuleType, how: str = "is gone") -> str:
    return (
        f"{library} {version(library)}: {name} {how}; {compat.__name__} relies on it "
        f"(checked against {library}{compat.CHECKED.get(library, ' (not declared)')})"
    )


def resolve(library: str, dotted: str, compat: ModuleType) -> object:
    """The object at ``dotted`` (a module, then attributes), or a failure naming what moved."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                pytest.fail(moved(library, dotted, compat))
            obj = getattr(obj, attr)
        return obj
    pytest.fail(moved(library, dotted, compat))


NO_ULTRALYTICS = pytest.mark.skipif(not HAS_ULTRALYTICS, reason="Ultralytics is not installed (the [detect] extra)")


@pytest.mark.parametrize(
    "compat, library",
    [pytest.param(c, lib, marks=[NO_ULTRALYTICS] if lib == "ultralytics" else []) for c in COMPAT for lib in c.CHECKED],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_the_installed_version_is_one_the_compat_module_was_checked_against(compat, library):
    installed = Version(version(library))
    assert installed in SpecifierSet(compat.CHECKED[library]), (
        f"{library} {installed} is outside {compat.CHECKED[library]}, the versions {compat.__name__} was "
        f"checked against: re-read the internals it names in the new version, then widen its CHECKED"
    )


# -- Ray ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["ray._private.services.canonicalize_bootstrap_address", "ray._private.ray_constants.ENABLE_RAY_CLUSTER"]
)
def test_ray_internals_are_where_ray_compat_reads_them(name):
    resolve("ray", name, ray_compat)


def test_rays_loopback_switch_is_still_the_environment_variable_ray_compat_sets():
    from ray._private import ray_constants

    switch = getattr(ray_constants, "ENABLE_RAY_CLUSTERS_ENV_VAR", None)
    assert switch == ray_compat.RAY_LOCAL_ONLY, moved(
        "ray", f"the switch {ray_compat.RAY_LOCAL_ONLY} of ENABLE_RAY_CLUSTER", ray_compat, f"is now {switch!r}"
    )


# -- Optuna inside Ray Tune's OptunaSearch ---------------------------------------------------------------


def test_optuna_search_keeps_its_study_and_trials_where_optuna_compat_reads_them():
    import optuna
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        space=lambda trial: {"x": trial.suggest_int("x", 0, 3)},  # define-by-run, as sweeps.space's
        metric="score",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    searcher.suggest("t1")
    for attr, kind in ((optuna_compat.STUDY, optuna.Study), (optuna_compat.TRIALS, dict)):
        where = f"ray.tune.search.optuna.OptunaSearch().{attr}"
        assert isinstance(getattr(searcher, attr, None), kind), moved("ray", where, optuna_compat, "is gone or changed")
    assert isinstance(optuna_compat.study(searcher), optuna.Study)
    assert optuna_compat.record(searcher, "t1").state == TrialState.RUNNING
    optuna_compat.enqueue(searcher, {"x": 3})
    assert searcher.suggest("t2") == {"x": 3}, moved("ray", "OptunaSearch's use of its study", optuna_compat, "changed")
    forgotten = optuna_compat.forget(searcher, "t1")
    assert isinstance(forgotten, optuna.trial.Trial) and "t1" not in getattr(searcher, optuna_compat.TRIALS)


# -- torch's FLOP counter --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, leading",
    [
        (torch_compat.CPU_SDPA, ["query", "key", "value"]),
        (torch_compat.MHA_FASTPATH, ["query", "key", "value", "embed_dim", "num_head"]),
    ],
)
def test_the_attention_ops_take_the_arguments_torch_compat_counts_from(name, leading):
    op = resolve("torch", f"torch.ops.aten.{name}", torch_compat)
    schema = getattr(getattr(op, "default", None), "_schema", None)
    arguments = [a.name for a in schema.arguments] if schema is not None else None
    assert arguments is not None and arguments[: len(leading)] == leading, moved(
        "torch", f"torch.ops.aten.{name}'s leading arguments {leading}", torch_compat, f"are now {arguments}"
    )


def test_attention_on_the_cpu_is_counted_through_torch_compats_formulas():
    import torch
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    resolve("torch", "torch.utils.flop_counter.register_flop_formula", torch_compat)
    resolve("torch", "torch.utils.flop_counter.sdpa_flop_count", torch_compat)
    torch_compat.register_attention_flops()
    torch_compat.register_attention_flops()  # once per process: a second call is no duplicate registration
    for name, formula in torch_compat.FORMULAS.items():
        registered = getattr(flop_registry.get(getattr(torch.ops.aten, name)), "__wrapped__", None)
        assert registered is formula, moved("torch", f"the FLOP formula of aten.{name}", torch_compat, "is not ours")

    q = torch.zeros(1, 2, 5, 8)  # (batch, heads, length, head dim)
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.zeros(1, 5, 8)
    with torch.inference_mode(), FlopCounterMode(display=False) as sdpa:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    with torch.inference_mode(), FlopCounterMode(display=False) as fused:
        mha(x, x, x, need_weights=False)
    # two matmuls of 2 x (1*2*5*5*8) multiply-adds; MHA adds Q, K, V and output projections, 2 x (5*8*8) each
    assert sdpa.get_total_flops() == 1600, moved(
        "torch", f"F.scaled_dot_product_attention on the CPU as aten.{torch_compat.CPU_SDPA}", torch_compat, "moved"
    )
    assert fused.get_total_flops() == 4 * 2 * 5 * 8 * 8 + 800, moved(
        "torch", f"nn.MultiheadAttention's fused path as aten.{torch_compat.MHA_FASTPATH}", torch_compat, "moved"
    )


# -- MLflow's SQL tracking store ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "mlflow.tracking._tracking_service.utils._get_store",
        "mlflow.store.tracking.sqlalchemy_store.SqlAlchemyStore",
        *(f"mlflow.store.tracking.dbmodels.models.{model}" for model in mlflow_compat.COLUMNS),
    ],
)
def test_mlflow_internals_are_where_mlflow_compat_reads_them(name):
    resolve("mlflow", name, mlflow_compat)


@pytest.mark.parametrize("model", list(mlflow_compat.COLUMNS))
def test_mlflows_tables_have_the_columns_mlflow_compat_reads(model):
    table = resolve("mlflow", f"mlflow.store.tracking.dbmodels.models.{model}", mlflow_compat).__table__
    read = (*mlflow_compat.COLUMNS[model], *([mlflow_compat.STAGE] if model == "SqlRun" else []))
    missing = [c for c in read if c not in table.c]
    assert not missing, moved("mlflow", f"the columns {missing} of table {table.name}", mlflow_compat)


def test_mlflow_compat_reads_a_sweeps_runs_as_mlflows_search_finds_them(tmp_path):
    """Child runs of the sweep only (not another parent's, not a deleted one, not another experiment's), newest
    first, with every latest metric (NaN included), parameter and tag, and the store MLflow's client uses."""
    import math

    import mlflow
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        assert type(mlflow_compat.sql_store()).__name__ == "SqlAlchemyStore", moved(
            "mlflow", "the client's store for a sqlite:/// URI", mlflow_compat, "is another class"
        )
        client = mlflow.MlflowClient()
        exp, other = client.create_experiment("a"), client.create_experiment("b")
        parent = client.create_run(exp).info.run_id
        kids = [client.create_run(exp, tags={MLFLOW_PARENT_RUN_ID: parent}).info.run_id for _ in range(3)]
        client.log_metric(kids[0], "acc", 0.5, step=1)
        client.log_metric(kids[0], "acc", 0.7, step=2)  # the latest is the one read
        client.log_metric(kids[1], "loss", float("nan"))
        client.log_param(kids[1], "arch", "resnet18")
        client.set_terminated(kids[2], "FAILED")
        client.delete_run(client.create_run(exp, tags={MLFLOW_PARENT_RUN_ID: parent}).info.run_id)
        client.create_run(other, tags={MLFLOW_PARENT_RUN_ID: parent})
        client.create_run(exp, tags={MLFLOW_PARENT_RUN_ID: kids[0]})
        rows = mlflow_compat.child_runs(exp, parent)
        found = client.search_runs([exp], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}'")
        mlflow.set_tracking_uri("http://127.0.0.1:9")  # a tracking server: MLflow's search instead (nothing sent)
        assert mlflow_compat.child_runs(exp, parent) is None
    finally:
        mlflow.set_tracking_uri(None)
    info = [(r.info.run_id, r.info.experiment_id, r.info.status, r.info.artifact_uri, r.info.start_time,
             r.info.end_time) for r in found]  # fmt: skip
    assert rows.info == info, moved("mlflow", "search_runs' runs or their order", mlflow_compat, "differ from ours")
    for kind in ("params", "tags"):
        want = {(r.info.run_id, k, v) for r in found for k, v in getattr(r.data, kind).items()}
        assert set(getattr(rows, kind)) == want, moved("mlflow", f"a run's {kind}", mlflow_compat, "differ from ours")
    want = {(r.info.run_id, k): v for r in found for k, v in r.data.metrics.items()}
    got = {(run, k): v for run, k, v in rows.metrics}
    assert got.keys() == want.keys() and math.isnan(got[kids[1], "loss"]) and got[kids[0], "acc"] == 0.7, moved(
        "mlflow", "a run's latest metrics", mlflow_compat, "differ from ours"
    )


# -- Ultralytics ----------------------------------------------------------------------------------------


@needs_ultralytics
@pytest.mark.parametrize(
    "name",
    [
        "ultralytics.engine.trainer.check_amp",
        "ultralytics.engine.trainer.BaseTrainer._setup_train",
        "ultralytics.models.yolo.detect.DetectionTrainer",
        f"{ultralytics_compat.DEFAULT_CALLBACKS}.add_integration_callbacks",
        "ultralytics.utils.events",
        *(f"{module}.check_font" for module in ultralytics_compat.FONT_LOOKUPS),
    ],
)
def test_ultralytics_internals_are_where_ultralytics_compat_patches_them(name):
    ultralytics_compat.load_ultralytics()
    resolve("ultralytics", name, ultralytics_compat)


@needs_ultralytics
def test_read_as_trainer_reads_image_and_label_files_as_ultralytics_detection_dataset_does(tmp_path):
    from trainables.shapes import ShapesSpec, generate

    ultralytics_compat.load_ultralytics()
    from ultralytics.data.dataset import YOLODataset

    root = generate(tmp_path, ShapesSpec(train=3, val=1, test=1), progress=lambda _: None).parent
    images = sorted(str(f) for f in (root / "images/train").iterdir())
    Path(images[1].replace("images", "labels").replace(".png", ".txt")).write_text("3 0.5 0.5 0.2 0.2\n")
    read = ultralytics_compat.read_as_trainer(images, num_classes=3)
    dataset = YOLODataset(img_path=str(root / "images/train"), data={"names": {0: "a", 1: "b", 2: "c"}}, task="detect")
    kept = {Path(label["im_file"]).name: len(label["bboxes"]) for label in dataset.labels}  # the trainer's reading
    assert {Path(i).name: n for i, (n, _) in zip(images, read, strict=True) if n is not None} == kept, moved(
        "ultralytics", "verify_image_label's arguments", ultralytics_compat, "read differently"
    )
    assert read[1][0] is None and "Label class 3 exceeds dataset class count 3" in read[1][1]


@needs_ultralytics
@pytest.mark.parametrize("key", list(ultralytics_compat.OFFLINE_ENV))
def test_ultralytics_still_reads_the_switches_ultralytics_compat_sets(key):
    ultralytics_compat.load_ultralytics()
    source = inspect.getsource(resolve("ultralytics", "ultralytics.utils", ultralytics_compat))
    assert f'"{key}"' in source, moved("ultralytics", f"the environment switch {key}", ultralytics_compat, "is unread")


@needs_ultralytics
def test_load_ultralytics_leaves_threads_and_pil_as_they_were():
    code = (
        "import json, os, PIL.Image\n"
        "before = PIL.Image.open\n"
        "from trainables.ultralytics_compat import OFFLINE_ENV, load_ultralytics\n"
        "load_ultralytics()\n"
        "print(json.dumps({'omp': os.environ.get('OMP_NUM_THREADS'), 'pil': PIL.Image.open is before,\n"
        "                  'env': {k: os.environ.get(k) for k in OFFLINE_ENV}}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS" and k not in ultralytics_compat.OFFLINE_ENV}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["omp"] is None, moved(
        "ultralytics", "import ultralytics' OMP_NUM_THREADS", ultralytics_compat, "stayed"
    )
    assert seen["pil"], moved("ultralytics", "import ultralytics' PIL.Image.open wrapper", ultralytics_compat, "stayed")
    assert seen["env"] == ultralytics_compat.OFFLINE_ENV


def test_importing_the_detection_trial_sets_no_environment_variable():
    code = (
        "import os\n"
        "before = dict(os.environ)\n"
        "import trainables.detection\n"
        "import sys\n"
        "after = dict(os.environ)\n"
        "changed = {k: (before.get(k), after.get(k)) for k in {*before, *after} if before.get(k) != after.get(k)}\n"
        "assert not changed, changed\n"
        "assert not any(m.startswith('ultralytics') for m in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ultralytics_compat.OFFLINE_ENV}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
