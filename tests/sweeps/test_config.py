"""Sweep recipes: every shipped YAML is valid, every mistake is named (file, key, what is allowed) before
Ray starts, and the search modes explore the space they are given, conditional parameters included."""

from __future__ import annotations

import re

import optuna
import pytest
import yaml
from ray.tune.search import Searcher

from sweeps.classify import config_from_args, main, parse_args
from sweeps.config import CONFIG_DIR, DEFAULT_CONFIG, ConfigError, config_from_dict, load_config, smoke
from sweeps.space import DefineByRun, num_trials, sampler, scheduler, search_algorithm
from trainables import metrics as M
from trainables.config import TrialConfig
from trainables.models import ARCH_PRESETS

RECIPES = sorted(CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_validates_and_its_starting_points_fit_its_space(recipe):
    cfg = load_config(recipe)
    points = cfg.starting_points()
    assert [p["arch"] for p in points] == list(cfg.archs)  # one per architecture, every family present
    for p in points:
        TrialConfig(**{**cfg.trial_constants(), **p})  # each starting point is a valid trial
    assert smoke(cfg).num_samples == len(cfg.archs)


def test_the_default_recipe_is_the_quickstart_and_crosses_every_axis():
    cfg = config_from_args(parse_args([]))
    assert cfg.source == str(DEFAULT_CONFIG)
    assert cfg.archs == (*ARCH_PRESETS["tiny"], "hog_svm")  # every family, and the baseline that costs seconds
    assert set(cfg.dim("freeze").values) == {"full", "partial", "frozen", "gradual"}
    assert set(cfg.dim("augment").values) == {"none", "light", "randaugment", "trivialaugment"}
    assert cfg.dim("lr").kind == "loguniform" and cfg.search == "tpe" and cfg.asha


def write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


BASE = "space:\n  arch: resnet18\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "space:\n  arch: [resnet18, convnxt_atto]\n",
            r"space\.arch: timm has no model named 'convnxt_atto'\. "
            r"Closest timm names: convnext_atto",
        ),
        (BASE + "  lr: -0.001\n", r"space\.lr: lr: must be > 0, got -0\.001"),
        (BASE + "  lr: {loguniform: [-1.0e-3, 1.0e-2]}\n", r"space\.lr\.loguniform: low must be > 0"),
        (BASE + "  lr: {loguniform: [1.0e-2, 1.0e-3]}\n", r"space\.lr\.loguniform: need low < high"),
        (BASE + "  augment: []\n", r"space\.augment: the list of choices is empty"),
        (
            BASE + "  img_size: {uniform: [96, 160]}\n",
            r"space\.img_size\.uniform: img_size takes an integer or null; a ",
        ),
        (BASE + "  lr: {randint: [1, 3]}\n", r"space\.lr\.randint: lr takes a number; a range of it is \{uniform\|"),
        (
            BASE + "  freeze: {randint: [0, 2]}\n",
            r"space\.freeze: freeze takes a string: a value or a list, not a range",
        ),
        (
            BASE + "  freeze: [full, partail]\n",
            r"space\.freeze: freeze: unknown freeze strategy 'partail'\. "
            r"Did you mean 'partial'",
        ),
        (
            BASE + "  weights: /nonexistent/w.safetensors\n",
            r"space\.weights: no such file '/nonexistent/w\.safetensors'",
        ),
        (BASE + "  weights: imagenet21k\n", r"space\.weights: weights: 'imagenet21k' is neither none nor imagenet"),
        (BASE + "  learning_rate: 0.1\n", r"space: unknown trial parameter 'learning_rate'"),
        (BASE + "  batch_size: '32'\n", r"space\.batch_size: expected an integer, got '32'"),
        (BASE + "  max_epochs: 3\n", r"space\.max_epochs: set by the sweep; use the top-level key 'max_epochs'"),
        (
            BASE + "  freeze: full\n  unfreeze_stages: [1, 2]\n",
            r"space\.unfreeze_stages: only used when freeze is 'partial', and space\.freeze never is",
        ),
        ("num_sample: 3\n" + BASE, r"unknown setting 'num_sample'\. Did you mean 'num_samples'"),
        ("num_samples: 0\n" + BASE, r"num_samples: must be >= 1"),
        ("timing_s: .inf\n" + BASE, r"timing_s: must be > 0 seconds and finite, got inf"),
        ("timing_s: 0\n" + BASE, r"timing_s: must be > 0 seconds and finite, got 0"),
        ("search: bayes\n" + BASE, r"search: unknown search algorithm 'bayes'.*Allowed: grid, random, tpe"),
        (
            "search: grid\n" + BASE + "  lr: {loguniform: [1.0e-4, 1.0e-2]}\n",
            r"search: 'grid' needs every axis to be a value or a list of values; lr is a continuous range",
        ),
        (
            "search: grid\nnum_samples: 5\n" + BASE + "  freeze: [full, frozen]\n",
            r"num_samples: the grid has 2 configurations",
        ),
        ("num_samples: null\n" + BASE, r"num_samples: null \(the whole grid\) needs search: grid"),
        ("objectives: [val_acc, speed]\n" + BASE, r"objectives: unknown objective 'speed'"),
        ("objectives: [latency_ms]\n" + BASE, r"objectives: ASHA stops trials on the first objective"),
        (
            "points_to_evaluate: [{arch: resnet18, freeze: gradual}]\n" + BASE + "  freeze: [full, frozen]\n",
            r"points_to_evaluate\[0\]\.freeze: 'gradual' is outside space\.freeze",
        ),
        (
            "max_epochs: 2\n" + BASE + "  freeze: [full, gradual]\n  gradual_epochs: 2\n",
            r"space\.\w+: gradual_epochs: head-only epochs before unfreezing must be in \[1, max_epochs\)",
        ),
        ("storage_path: s3://bucket/ray\n" + BASE, r"storage_path: 's3://bucket/ray': object-store URIs are not"),
        ("space: {}\n", r"space: expected a mapping"),
        ("space:\n  freeze: full\n", r"space\.arch: the architectures to compare are required"),
    ],
)
def test_a_recipe_mistake_names_the_file_the_key_and_what_is_allowed(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: ")


def test_a_bad_recipe_stops_the_script_before_ray_or_mlflow_start(tmp_path, capsys):
    path = write(tmp_path, BASE + "  lr: -1.0\n")
    assert main(["--config", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}" in err and "space.lr" in err
    assert not (tmp_path / "m.db").exists()


def test_a_path_in_a_home_this_machine_lacks_is_named_in_a_recipe_a_flag_and_resume(capsys):
    from sweeps.detect_config import config_from_dict as detection_config

    home = "~no_such_user_here"
    with pytest.raises(ConfigError) as e:
        config_from_dict(
            {"data": f"{home}/photos", "storage_path": home, "space": {"weights": f"{home}/w.pth"}}, "r.yaml"
        )
    for key in ("data", "storage_path", "space.weights"):
        assert f"r.yaml: {key}: '{home}" in str(e.value) and f"no home directory '{home}'" in str(e.value)
    with pytest.raises(ConfigError, match=rf"data_cache: '{home}/c': this machine has no home directory"):
        detection_config({"data_cache": f"{home}/c"}, "d.yaml")
    assert main(["--data", f"{home}/photos"]) == 2
    assert f"with --data: data: '{home}/photos': this machine has no home directory" in capsys.readouterr().err
    assert main(["--resume", f"{home}/sweep"]) == 2
    assert f"--resume '{home}/sweep': this machine has no home directory" in capsys.readouterr().err
    assert config_from_dict({"data": "~/photos"}).data == "~/photos"  # an existing home: kept as written


@pytest.mark.parametrize(
    "task, space, mistakes",
    [
        (
            "classify",
            {"arch": ["resnet18", "efficientnet_b0"], "label_smoothing": 1.5, "lr": [1e-3, 1e-2]},
            {"space.label_smoothing": "label_smoothing: must be in [0, 1)"},
        ),
        (
            "detect",
            {"model": ["yolov8n", "yolov5n"], "imgsz": 100, "mosaic": 2, "augment": ["light", "medium"]},
            {
                "space.model": "'yolov5n' is not a YOLO model name",
                "space.imgsz": "imgsz: a multiple of 32",
                "space.mosaic": "mosaic: a probability or fraction in [0, 1], got 2.0",
                "space.augment": "unknown augmentation strength 'medium'",
            },
        ),
    ],
)
def test_a_trial_value_that_is_wrong_is_named_once_at_its_own_key_with_the_others_found(task, space, mistakes):
    from sweeps.detect_config import config_from_dict as detection_config

    read = {"classify": config_from_dict, "detect": detection_config}[task]
    with pytest.raises(ConfigError) as e:
        read({"space": space}, "r.yaml")
    assert sorted(p.split(": ", 2)[1] for p in e.value.problems) == sorted(mistakes)  # one problem per key
    for key, message in mistakes.items():
        assert any(p.startswith(f"r.yaml: {key}: ") and message in p for p in e.value.problems), (key, e.value)


@pytest.mark.parametrize(
    "task, given, mistakes",
    [
        (  # a wrong type, then a rule and a trial value of keys that could be read
            "classify",
            {"max_epochs": "x", "val_frac": 2, "space": {"arch": ["resnet99"], "freeze": ["bogus"]}},
            ["max_epochs", "val_frac/test_frac", "space.arch", "space.freeze"],
        ),
        (  # a wrong max_epochs (which every trial gets) beside the space's own mistakes
            "classify",
            {"max_epochs": 0, "space": {"arch": ["resnet18"], "freeze": ["bogus"], "warmup_epochs": [-1]}},
            ["max_epochs", "space.freeze", "space.warmup_epochs"],
        ),
        (  # a rule about a key that could not be read is not checked against its default
            "classify",
            {"max_epochs": "x", "grace_period": 20, "asha": True, "space": {"arch": ["resnet18"]}},
            ["max_epochs"],
        ),
        (
            "detect",
            {"max_epochs": 0, "shapes_train": "many", "space": {"imgsz": [30]}},
            ["shapes_train", "max_epochs", "space.imgsz"],
        ),
    ],
)
def test_one_mistake_does_not_hide_the_others(task, given, mistakes):
    from sweeps.detect_config import config_from_dict as detection_config

    read = {"classify": config_from_dict, "detect": detection_config}[task]
    with pytest.raises(ConfigError) as e:
        read(given, "r.yaml")
    assert sorted(p.split(": ", 2)[1] for p in e.value.problems) == sorted(mistakes)


def test_a_missing_recipe_lists_the_shipped_ones(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no such config file" in err and "quickstart.yaml" in err


def test_flags_override_the_recipe_and_errors_name_the_flag():
    cfg = config_from_args(
        parse_args(
            [
                "--num-samples",
                "5",
                "--max-epochs",
                "3",
                "--gpus-per-trial",
                "0",
                "--cpus-per-trial",
                "2",
                "--archs",
                "resnet18",
                "small",
                "--weights",
                "none",
                "--img-size",
                "0",
                "--no-asha",
            ]
        )
    )
    assert (cfg.num_samples, cfg.max_epochs, cfg.cpus_per_trial, cfg.asha) == (5, 3, 2.0, False)
    assert cfg.archs == ("resnet18", *[a for a in ARCH_PRESETS["small"]])  # presets expand, order kept
    assert cfg.dim("img_size").values == (None,)  # 0: each model's own size
    with pytest.raises(ConfigError, match=r"with --num-samples: num_samples: must be >= 1 or null, got 0"):
        config_from_args(parse_args(["--num-samples", "0"]))
    with pytest.raises(ConfigError, match=r"with --lr-range: space\.lr\.loguniform: need low < high"):
        config_from_args(parse_args(["--lr-range", "1e-2", "1e-4"]))


def test_narrowing_freeze_on_the_command_line_drops_the_recipes_partial_settings_and_says_so(capsys):
    cfg = config_from_args(parse_args(["--freeze", "full", "frozen"]))
    assert "unfreeze_stages" not in cfg.space and "gradual_epochs" not in cfg.space
    out = capsys.readouterr().out
    assert "--freeze has no 'partial': the recipe's space.unfreeze_stages is not used" in out


def test_any_axis_can_be_set_from_the_command_line():
    cfg = config_from_args(
        parse_args(
            [
                "--set",
                "mixup=0.2",
                "--set",
                "cutmix=[0.0, 1.0]",
                "--set",
                "random_erasing=0.25",
                "--set",
                "unfreeze_stages=[1,2,3]",
                "--set",
                "objectives=[val_acc, latency_ms]",
                "--set",
                "search=random",
                "--set",
                "backbone_lr_mult={loguniform: [0.01, 0.3]}",
            ]
        )
    )
    assert cfg.dim("mixup").values == (0.2,) and cfg.dim("cutmix").values == (0.0, 1.0)
    assert cfg.dim("unfreeze_stages").values == (1, 2, 3) and cfg.dim("backbone_lr_mult").kind == "loguniform"
    assert cfg.objectives == ("val_acc", "latency_ms") and cfg.search == "random"
    with pytest.raises(
        ConfigError,
        match=r"--set mixpu=0.2: unknown setting or trial parameter 'mixpu'\. "
        r"Did you mean 'mixup'",
    ):
        config_from_args(parse_args(["--set", "mixpu=0.2"]))
    with pytest.raises(ConfigError, match=r"with --set cutmix: space\.cutmix: cutmix: must be >= 0"):
        config_from_args(parse_args(["--set", "cutmix=-1"]))


def test_numbers_written_like_1e_3_are_read_as_numbers(tmp_path):
    cfg = load_config(write(tmp_path, BASE + "  lr: 1e-3\n  weight_decay: [0, 5e-2]\n"))
    assert cfg.dim("lr").values == (0.001,)
    assert cfg.dim("weight_decay").values == (0.0, 0.05)


def _ask(cfg, n: int, study: optuna.Study | None = None) -> list[dict]:
    study = study or optuna.create_study(sampler=sampler(cfg), direction="maximize")
    space = DefineByRun(cfg)
    out = []
    for _ in range(n):
        trial = study.ask()
        fixed = space(trial)
        out.append({**trial.params, **fixed})
        study.tell(trial, 0.5)
    return out


def test_conditional_parameters_exist_only_under_their_freeze_strategy():
    cfg = config_from_dict(
        {
            "search": "random",
            "space": {
                "arch": "resnet18",
                "freeze": ["full", "partial", "frozen", "gradual"],
                "unfreeze_stages": [1, 2, 3],
                "gradual_epochs": 2,
                "lr": {"loguniform": [1e-4, 1e-2]},
            },
        }
    )
    configs = _ask(cfg, 60)
    assert {c["freeze"] for c in configs} == {"full", "partial", "frozen", "gradual"}
    for c in configs:
        assert ("unfreeze_stages" in c) == (c["freeze"] == "partial"), c
        assert ("gradual_epochs" in c) == (c["freeze"] == "gradual"), c
        assert 1e-4 <= c["lr"] <= 1e-2
        TrialConfig(**{**c, "max_epochs": cfg.max_epochs})
    assert {c["unfreeze_stages"] for c in configs if "unfreeze_stages" in c} == {1, 2, 3}


def test_grid_search_runs_each_combination_exactly_once():
    cfg = load_config(CONFIG_DIR / "grid.yaml")
    assert cfg.grid_size() == num_trials(cfg) == 16
    key = lambda c: tuple(sorted((k, str(v)) for k, v in c.items()))  # noqa: E731
    asked = [{k: v for k, v in c.items() if k not in ("max_epochs", "seed")} for c in _ask(cfg, 16)]
    assert sorted(map(key, asked)) == sorted(map(key, cfg.grid()))


@pytest.mark.parametrize("search", ["tpe", "random"])
def test_a_search_of_a_discrete_space_never_trains_a_configuration_twice(search):
    """Repeats are answered from the study, not trained again; 16 trials asked of a 6-configuration space
    run 6, and then the search is finished."""
    space = {"arch": ["resnet18", "convnext_atto"], "freeze": ["full", "frozen", "partial"], "unfreeze_stages": 1}
    cfg = config_from_dict({"search": search, "num_samples": 16, "points_to_evaluate": [], "space": space})
    assert num_trials(cfg) == 6
    searcher = search_algorithm(cfg)
    started = []
    for i in range(6):
        config = searcher.suggest(f"t{i}")
        started.append((config["arch"], config["freeze"]))
        searcher.on_trial_complete(f"t{i}", {M.VAL_ACC: 0.9 if config["arch"] == "resnet18" else 0.1})
    assert sorted(started) == sorted((c["arch"], c["freeze"]) for c in cfg.grid())
    assert searcher.repeats > 0  # the sampler did propose repeats (random sampling over 6 points)
    assert searcher.suggest("t6") == Searcher.FINISHED


def test_a_baseline_that_wins_is_not_trained_again_in_a_continuous_space():
    """hog_svm has nothing continuous to vary: once it is the best, TPE keeps proposing it. Each repeat is
    answered from the study, so the search's trials go to the networks, and after MAX_REPEATS repeats in a
    row a random draw moves the search on."""
    space = {"arch": ["hog_svm", "resnet18", "convnext_atto"], "lr": {"loguniform": [1e-4, 1e-2]}}
    cfg = config_from_dict({"search": "tpe", "num_samples": 16, "space": space})
    searcher = search_algorithm(cfg)
    archs = []
    for i in range(16):
        config = searcher.suggest(f"t{i}")
        archs.append(config["arch"])
        assert ("lr" in config) == (config["arch"] != "hog_svm")  # a baseline has no learning rate
        searcher.on_trial_complete(f"t{i}", {M.VAL_ACC: 0.99 if config["arch"] == "hog_svm" else 0.5})
    assert archs.count("hog_svm") == 1 and searcher.repeats > 0


def test_multi_objective_search_trades_accuracy_against_latency():
    cfg = load_config(CONFIG_DIR / "accuracy-vs-latency.yaml")
    search = search_algorithm(cfg)
    assert search.metric == [M.VAL_ACC, M.LATENCY] and search.mode == ["max", "min"]
    asha = scheduler(cfg)
    assert asha.metric == M.VAL_ACC  # ASHA compares trials on the first objective
    yaml.safe_dump(cfg.to_yaml_dict())  # the recipe as run is loggable


def test_search_modes_pick_their_optuna_sampler():
    for mode, cls in [
        ("tpe", optuna.samplers.TPESampler),
        ("random", optuna.samplers.RandomSampler),
        ("grid", optuna.samplers.BruteForceSampler),
    ]:
        cfg = config_from_dict(
            {
                "search": mode,
                "num_samples": 2 if mode != "grid" else None,
                "space": {"arch": ["resnet18", "convnext_atto"]},
            }
        )
        assert isinstance(sampler(cfg), cls)


def test_each_setting_takes_its_own_type_only_and_yamls_numbers_written_as_text():
    """YAML 1.1 reads 1e-3 (no dot) as text: a number field takes it, nothing else is converted."""
    cfg = config_from_dict({"timing_s": "5e-1", "confirm": None, "space": {"arch": "resnet18", "lr": "1e-3"}})
    assert cfg.timing_s == 0.5 and cfg.dim("lr").values == (1e-3,) and cfg.confirm.trials == 0
    assert config_from_dict({"space": {"arch": "resnet18", "batch_size": 16.0}}).dim("batch_size").values == (16,)
    with pytest.raises(ConfigError) as e:
        config_from_dict(
            {
                "asha": 1,  # not true
                "num_samples": 2.5,
                "seed": None,
                "tracking_wait_s": False,
                "output_dir": 7,
                "confirm": {"top": 1, "seed": 2},
                "space": {"arch": "resnet18", "num_workers": "2", "amp": "yes", "batch_size": 16.5},
            }
        )
    assert sorted(p.removeprefix("<dict>: ") for p in e.value.problems) == [
        "asha: expected true or false, got 1",
        "confirm: unknown key 'seed'. Did you mean 'seeds'? Allowed: seeds, top.",
        "num_samples: expected an integer or null, got 2.5",
        "output_dir: expected a string, got 7",
        "seed: may not be null",
        "space.amp: expected true or false, got 'yes'",
        "space.batch_size: expected an integer, got 16.5",
        "space.num_workers: expected an integer or null, got '2'",
        "tracking_wait_s: expected a number, got False",
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        (  # each key on its own: unknown, wrong type, an empty list, an impossible range
            "num_sample: 3\nmax_epochs: two\nspace:\n  arch: [resnet18]\n  freeze: []\n"
            "  lr: {loguniform: [0.1, 0.01]}\n",
            [
                "unknown setting 'num_sample'. Did you mean 'num_samples'",
                "max_epochs: expected an integer, got 'two'",
                "space.freeze: the list of choices is empty",
                "space.lr.loguniform: need low < high, got [0.1, 0.01]",
            ],
        ),
        (  # well-typed but impossible values
            "max_epochs: 0\ncpus_per_trial: 0\nsearch: bayes\nobjectives: [speed]\n" + BASE,
            [
                "max_epochs: must be >= 1, got 0",
                "cpus_per_trial: must be > 0, got 0.0",
                "search: unknown search algorithm 'bayes'",
                "objectives: unknown objective 'speed'",
            ],
        ),
        (  # each key valid on its own, but not together with the others
            "search: grid\npoints_to_evaluate: [{arch: resnet50}]\nspace:\n  arch: resnet18\n"
            "  lr: {loguniform: [1.0e-4, 1.0e-2]}\n",
            [
                "search: 'grid' needs every axis to be a value or a list of values; lr is a continuous range",
                "points_to_evaluate[0].arch: 'resnet50' is outside space.arch ('resnet18')",
            ],
        ),
        (  # the space's values against each other
            "space:\n  arch: resnet18\n  freeze: full\n  unfreeze_stages: 2\n  gradual_epochs: 1\n"
            "  mixup: 0.2\n  batch_size: [31, 32]\n",
            [
                "space.batch_size: batch_size: MixUp/CutMix pair images within a batch; need an even size, got 31",
                "space.unfreeze_stages: only used when freeze is 'partial', and space.freeze never is ('full')",
                "space.gradual_epochs: only used when freeze is 'gradual', and space.freeze never is ('full')",
            ],
        ),
    ],
    ids=["keys-and-types", "impossible-values", "keys-together", "space-together"],
)
def test_every_mistake_in_a_recipe_is_reported_in_one_go(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: {len(expected)} problems:")
    for problem in expected:
        assert f"{path}: {problem}" in msg


# -- the batch against the training split, once the data is loaded ---------------------------------------


def batch_config(tmp_path, space: str, top: str = ""):
    return load_config(write(tmp_path, top + BASE + space))


@pytest.mark.parametrize(
    "space, top, message",
    [
        ("  batch_size: 512\n", "", r"space\.batch_size: 512 is more than the 300 images of the training split: "),
        (
            "  batch_size: [32, 512, 1024]\n",
            "train_limit: 300\n",
            r"space\.batch_size: 512, 1024 are more than the 300 images of the training split \(cut to train_limit "
            r"300; --smoke-test sets 300\).*one step an epoch, on all 300 images\. Give batch sizes of at most 300",
        ),
        (
            "  batch_size: {randint: [16, 512]}\n",
            "",
            r"space\.batch_size: randint\[16, 512\] reaches 512, which is more than the 300 images.*"
            r"Lower the upper bound to at most 300",
        ),
        (  # drop_last under MixUp: not even one step
            "  batch_size: 512\n  mixup: 0.2\n",
            "",
            r"a trial would take no step at all and fail at its start \(under MixUp/CutMix the training loader drops",
        ),
        (
            "  cutmix: [0.0, 1.0]\n",
            "",
            r"batch_size \(the default, 64\): 64 is more than the 50 images.*a trial with MixUp/CutMix none at all",
        ),
    ],
)
def test_a_batch_larger_than_the_training_split_is_refused_naming_value_and_size(tmp_path, space, top, message):
    cfg = batch_config(tmp_path, space, top)
    train_size = 50 if "batch_size" not in space else 300
    with pytest.raises(ConfigError, match=message) as e:
        cfg.check_batch_size(train_size)
    assert str(e.value).startswith(f"{cfg.source}: ")


def test_a_batch_as_large_as_the_training_split_is_one_full_step_and_fine(tmp_path):
    batch_config(tmp_path, "  batch_size: [32, 300]\n  mixup: 0.2\n").check_batch_size(300)
    batch_config(tmp_path, "  batch_size: {randint: [16, 300]}\n").check_batch_size(300)


def test_a_sweep_of_baselines_only_has_no_batch_to_fit_in_a_small_training_split():
    cfg = config_from_dict({"space": {"arch": ["hog_svm", "clip_probe"]}})
    cfg.check_batch_size(27)  # neither trains in batches (batch_size is refused in such a space)
    with pytest.raises(ConfigError, match="64 is more than the 27 images"):
        config_from_dict({"space": {"arch": ["hog_svm", "resnet18"]}}).check_batch_size(27)


def test_a_batch_larger_than_the_smoke_tests_split_is_among_the_problems_found_before_ray(tmp_path):
    from sweeps.classification import TASK
    from sweeps.run import check_request

    argv = ["--smoke-test", "--archs", "resnet18", "--batch-size", "512", "--storage-path", str(tmp_path / "r")]
    cfg = config_from_args(parse_args(argv))  # valid as a recipe: the split's size is not known yet
    prepared, problems = check_request(TASK, cfg, f"sqlite:///{tmp_path}/m.db")
    assert prepared is None  # the batch size is one of the problems: nothing was prepared for trials
    assert f"{cfg.source}: space.batch_size: 512 is more than the 300 images of the training split" in problems


# -- --set ------------------------------------------------------------------------------------------------


def test_every_bad_set_is_reported_at_once_with_the_recipes_own_checks():
    argv = ["--set", "mixpu=0.2", "--set", "lr", "--set", "cutmix=[0.0", "--set", "asha=maybe", "--set", "see=1"]
    with pytest.raises(ConfigError) as e:
        config_from_args(parse_args(argv))
    msg = str(e.value)
    assert msg.startswith("5 problems:")
    assert "--set mixpu=0.2: unknown setting or trial parameter 'mixpu'. Did you mean 'mixup'" in msg
    assert "--set lr: expected KEY=VALUE, e.g. --set mixup=0.2" in msg
    assert "--set cutmix=[0.0: the value is not valid YAML: expected ',' or ']', but got '<stream end>'" in msg
    assert "with --set asha: asha: expected true or false, got 'maybe'" in msg  # the good keys still checked
    assert "--set see=1: unknown setting or trial parameter 'see'" in msg
    assert len(e.value.problems) == 5 and all("\n" not in p for p in e.value.problems)  # one line each


def test_the_closest_names_to_a_wrong_set_key_list_each_name_once():
    for wrong in ("see", "max_epoch"):
        with pytest.raises(ConfigError) as e:
            config_from_args(parse_args(["--set", f"{wrong}=1"]))
        hints = re.search(r"Did you mean (.*)\? Allowed: (.*)\.$", str(e.value))
        for names in hints.groups():
            listed = names.split(", ")
            assert len(listed) == len(set(listed)), listed
    assert "'max_epochs'" in hints.group(1)


def test_set_seed_and_max_epochs_set_the_sweeps_own_values():
    # both a top-level setting and a trial field: the sweep sets them for every trial
    cfg = config_from_args(parse_args(["--set", "seed=7", "--set", "max_epochs=3"]))
    assert (cfg.seed, cfg.max_epochs) == (7, 3) and "seed" not in cfg.space and "max_epochs" not in cfg.space
