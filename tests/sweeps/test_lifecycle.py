"""The lifecycle every task shares: the same checks of a recipe and its flags, and a sweep directory that
knows its task and its data, whichever script started it."""

import importlib.util
import json
import os

import pytest
import yaml

from sweeps import classify, detect
from sweeps.cli import load_task
from sweeps.config import config_from_dict
from sweeps.detect_config import DetectSweepConfig
from sweeps.recipe import ConfigError
from sweeps.run import RECIPE_FILE, SWEEP_FILE, resume_sweep

ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
RECIPES = [config_from_dict, DetectSweepConfig.from_dict]


@pytest.mark.parametrize("read", RECIPES, ids=["classify", "detect"])
@pytest.mark.parametrize(
    "settings, message",
    [
        ({"num_samples": None, "search": "tpe"}, "num_samples: null (the whole grid) needs search: grid"),
        ({"grace_period": 5, "max_epochs": 3}, "grace_period: (5) must not exceed max_epochs (3)"),
        ({"max_failures": -1}, "max_failures: must be >= 0, got -1"),
        ({"tracking_wait_s": -1}, "tracking_wait_s: must be >= 0 seconds"),
        ({"storage_path": "s3://bucket/ray"}, "storage_path: 's3://bucket/ray': object-store URIs are not supported"),
    ],
)
def test_both_tasks_refuse_the_same_mistakes(read, settings, message):
    """A detection recipe with num_samples: null and search: tpe used to run the 'grid' of a continuous space."""
    with pytest.raises(ConfigError) as e:
        read(settings)
    assert message in str(e.value)


@pytest.mark.parametrize("read", RECIPES, ids=["classify", "detect"])
@pytest.mark.parametrize(
    "confirm, message",
    [
        ({"tops": 2, "seeds": 2}, "confirm: unknown key 'tops'. Did you mean 'top'?"),
        ({"top": -1, "seeds": 2}, "confirm.top: expected an integer >= 0, got -1"),
        ({"top": 1, "seeds": "two"}, "confirm.seeds: expected an integer >= 0, got 'two'"),
        (3, "confirm: expected a mapping like {top: 2, seeds: 2}, or null, got 3"),
    ],
)
def test_both_tasks_read_the_confirmation_stage_alike(read, confirm, message):
    with pytest.raises(ConfigError) as e:
        read({"confirm": confirm})
    assert message in str(e.value)


def test_detection_refuses_a_confirmation_stage_its_table_cannot_show():
    with pytest.raises(ConfigError, match="confirm: not supported for detection yet"):
        DetectSweepConfig.from_dict({"confirm": {"top": 1, "seeds": 1}})
    assert DetectSweepConfig.from_dict({"confirm": None}).confirm.trials == 0


def test_the_confirmation_stage_from_the_command_line_and_in_the_smoke_test():
    cfg = classify.config_from_args(classify.parse_args(["--set", "confirm={top: 3, seeds: 4}"]))
    assert (cfg.confirm.top, cfg.confirm.seeds) == (3, 4)
    assert cfg.flat()["confirm.seeds"] == 4 and cfg.to_yaml_dict()["confirm"] == {"top": 3, "seeds": 4}
    smoke = classify.config_from_args(classify.parse_args(["--smoke-test"]))
    assert (smoke.confirm.top, smoke.confirm.seeds) == (1, 1)  # the default recipe's, shrunk to one trial
    off = classify.config_from_args(classify.parse_args(["--smoke-test", "--set", "confirm=null"]))
    assert off.confirm.trials == 0


def sweep_dir(tmp_path, task: str, script: str, recipe: dict, **record) -> str:
    d = tmp_path / f"{task}-20261203-000000"
    d.mkdir()
    (d / SWEEP_FILE).write_text(json.dumps({"task": task, "script": script, **record}))
    (d / RECIPE_FILE).write_text(yaml.safe_dump(recipe))
    os.chmod(d, 0o700)
    return str(d)


def test_resuming_another_tasks_sweep_names_the_script_that_owns_it(tmp_path, capsys):
    d = sweep_dir(tmp_path, "detect", "detect.py", {"shapes_train": 8})
    assert classify.main(["--resume", d]) == 2
    assert f"a 'detect' sweep, not a 'classify' one; resume it with python sweeps/detect.py --resume {d}" in (
        capsys.readouterr().err
    )


@pytest.mark.skipif(not ULTRALYTICS, reason="detection needs the [detect] extra")
def test_a_resumed_detection_sweep_refuses_data_that_changed(tmp_path, capsys):
    from sweeps.detection import TASK

    recipe = {"shapes_train": 8, "data_cache": str(tmp_path / "data"), "space": {"model": "yolov8n", "imgsz": 64}}
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    d = sweep_dir(tmp_path, "detect", "detect.py", recipe, tracking_uri=uri, split_fingerprint="not-this-data")
    assert resume_sweep(TASK, tmp_path / os.path.basename(d), None) == 2
    assert "no longer splits into the images this sweep trained and tested on" in capsys.readouterr().err


@pytest.mark.skipif(not ULTRALYTICS, reason="detection needs the [detect] extra")
def test_an_unknown_set_key_is_refused_when_the_detection_flags_are_read(tmp_path, capsys):
    assert detect.main(["--set", "imgzs=320", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err
    assert "--set imgzs=320: unknown setting or trial parameter 'imgzs'. Did you mean 'imgsz'" in err
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("command", [classify.COMMAND, detect.COMMAND], ids=["classify", "detect"])
def test_every_flag_overrides_a_key_the_tasks_recipe_has(command):
    """A flag and its recipe key are one definition: a flag whose key the recipe does not know would be
    refused as an unknown setting at every use."""
    task = load_task(command)
    keys = {"settings": set(task.recipe.settings()), "space": set(task.recipe.space_keys())}
    flags = [f for f in command.all_flags() if f.where is not None]
    assert len(flags) >= 12
    assert [f.name for f in flags if f.key not in keys[f.where]] == []


@pytest.mark.parametrize("command", [classify.COMMAND, detect.COMMAND], ids=["classify", "detect"])
def test_the_set_examples_in_each_scripts_help_are_taken_by_its_own_recipe(command):
    import shlex

    from sweeps.cli import config_from_args, parse_args

    examples = shlex.split(command.set_examples)
    assert examples.count("--set") >= 3
    cfg = config_from_args(command, parse_args(command, examples))  # raises naming any example it refuses
    for key in (item.split("=", 1)[0] for item in examples[1::2]):
        assert key in cfg.space or key in cfg.settings(), key


@pytest.mark.parametrize("command", [classify.COMMAND, detect.COMMAND], ids=["classify", "detect"])
def test_the_smoke_test_shrinks_the_recipe_but_not_what_the_command_line_set(command, capsys):
    from sweeps.cli import config_from_args, parse_args

    smoke = config_from_args(command, parse_args(command, ["--smoke-test"]))
    assert (smoke.max_epochs, smoke.train_limit) == (2, smoke.shrunk()["train_limit"])
    argv = ["--smoke-test", "--max-epochs", "3", "--set", "train_limit=7"]
    kept = config_from_args(command, parse_args(command, argv))
    assert (kept.max_epochs, kept.train_limit, kept.num_samples) == (3, 7, smoke.num_samples)
    assert "note: --smoke-test keeps what --max-epochs, --set train_limit set" in capsys.readouterr().out
    later = config_from_args(command, parse_args(command, ["--smoke-test", "--grace-period", "3"]))
    assert (later.grace_period, later.max_epochs) == (3, 3)  # ASHA's first rung within the shrunk epochs
