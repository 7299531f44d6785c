"""The entry script's command line: it explains itself and refuses bad input before Ray starts."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeps.classify import config_from_args, main, parse_args
from tests.conftest import REPO

SCRIPT = str(REPO / "sweeps" / "classify.py")


def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    flags = [
        "--data",
        "--archs",
        "--freeze",
        "--augment",
        "--lr-range",
        "--weights",
        "--num-samples",
        "--max-epochs",
        "--cpus-per-trial",
        "--gpus-per-trial",
        "--smoke-test",
        "--experiment",
        "--tracking-uri",
        "--storage-path",
        "--output-dir",
        "--address",
        "--verbose",
        "--no-asha",
        "--max-failures",
        "--config",
        "--search",
        "--img-size",
        "--batch-size",
        "--set",
        "--resume",
        "--registered-model",
    ]
    for flag in flags:
        assert flag in out.stdout, flag
    assert "digits" in out.stdout and "root/<class>/<image>" in out.stdout
    # the same default store as python -m analysis.report/predict/export say (tests/analysis/test_report.py)
    assert "$MLFLOW_TRACKING_URI, else MLflow's local default sqlite:///mlflow.db" in " ".join(out.stdout.split())


def test_smoke_test_flag_shrinks_the_sweep_but_keeps_every_family():
    cfg = config_from_args(parse_args(["--smoke-test"]))
    assert cfg.num_samples == 5 and cfg.max_epochs == 2 and cfg.train_limit == 300
    assert [p["arch"] for p in cfg.starting_points()] == list(cfg.archs) and len(cfg.archs) == 5  # 4 + baseline


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--archs", "resnet18", "convnxt_atto"],
            "timm has no model named 'convnxt_atto'. Closest timm names: convnext_atto",
        ),
        (["--freeze", "ful"], "space.freeze: freeze: unknown freeze strategy 'ful'. Did you mean 'full'"),
        (["--augment"], None),  # argparse: a flag that needs values
        (["--lr-range", "1e-2", "1e-4"], "need low < high"),
        (["--num-samples", "0"], "num_samples: must be >= 1"),
        (["--search", "bayes"], None),  # argparse: not one of the choices
    ],
)
def test_bad_input_fails_fast_with_the_value_named(argv, message, capsys):
    if message is None:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        return
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_missing_data_directory_is_reported_before_ray_starts(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "nope"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err
    assert "--data" in err and "no such directory" in err
    assert not (tmp_path / "m.db").exists()  # nothing was tracked either


def test_a_trial_bigger_than_the_local_cluster_is_refused_not_left_pending():
    from sweeps.config import SweepConfig
    from sweeps.run import check_resources

    with pytest.raises(ValueError, match=r"1 GPU per trial, cluster has 0"):
        check_resources(SweepConfig(gpus_per_trial=1), {"CPU": 2.0}, local=True)
    with pytest.raises(ValueError, match=r"4 CPU per trial, cluster has 2"):
        check_resources(SweepConfig(cpus_per_trial=4), {"CPU": 2.0}, local=True)
    check_resources(SweepConfig(cpus_per_trial=2), {"CPU": 2.0}, local=True)  # fits exactly
    check_resources(SweepConfig(gpus_per_trial=1), {"CPU": 2.0}, local=False)  # an autoscaler may add GPUs


def test_every_slot_of_the_sweeps_own_ray_starts_a_trial_at_once():
    from sweeps.config import SweepConfig
    from sweeps.run import trials_at_once

    assert trials_at_once(SweepConfig(), {"CPU": 2.0}) == 2
    assert trials_at_once(SweepConfig(cpus_per_trial=2), {"CPU": 3.0}) == 1
    assert trials_at_once(SweepConfig(gpus_per_trial=0.1), {"CPU": 16.0, "GPU": 0.3}) == 3  # 0.3 / 0.1 is 2.999...
    assert trials_at_once(SweepConfig(cpus_per_trial=4, gpus_per_trial=0.5), {"CPU": 8.0, "GPU": 2.0}) == 2


def test_only_a_ray_of_the_sweeps_own_is_kept_to_loopback(tmp_path, monkeypatch):
    from ray._private import ray_constants

    from sweeps.ray_compat import RAY_LOCAL_ONLY, loopback_only, starts_local_ray

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no `ray start` instance of this machine is found
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert starts_local_ray(None) and starts_local_ray("local")
    assert not starts_local_ray("10.0.0.1:6379")  # a cluster the user named: Ray's addresses are its own
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert not starts_local_ray(None)
    monkeypatch.delenv(RAY_LOCAL_ONLY, raising=False)
    with loopback_only():
        assert os.environ[RAY_LOCAL_ONLY] == "0" and ray_constants.ENABLE_RAY_CLUSTER is False
    # a later ray.init in the same process is not kept to loopback
    assert RAY_LOCAL_ONLY not in os.environ and ray_constants.ENABLE_RAY_CLUSTER is True


def test_tracking_addresses_stay_out_of_the_sweeps_parameters():
    from sweeps.config import SweepConfig

    flat = SweepConfig(tracking_uri="http://user:secret@127.0.0.1:5000", address="10.0.0.1:6379").flat()
    assert "secret" not in str(flat) and "tracking_uri" not in flat and "address" not in flat


def test_a_model_that_cannot_take_the_input_size_is_refused_before_ray_starts(tmp_path, capsys):
    argv = ["--archs", "resnet18", "convnext_atto", "--img-size", "24", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    assert main(argv) == 2
    assert "space: convnext_atto cannot take img_size=24" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()


def test_a_partial_fine_tune_that_would_train_the_whole_model_is_said_before_ray_starts():
    from sweeps.classification import check_models
    from sweeps.config import SweepConfig

    space = {"arch": ["resnet18"], "freeze": ["partial", "full"], "unfreeze_stages": [1, 5, 99], "img_size": 32}
    said = []
    check_models(SweepConfig.from_dict({"space": space}), 10, said.append)
    assert said == [
        "warning: resnet18 has 5 parameter groups below its head (stem and stages): freeze=partial with "
        "unfreeze_stages=5, 99 trains all of them, as freeze=full does"
    ]
    said.clear()
    check_models(SweepConfig.from_dict({"space": {**space, "unfreeze_stages": [1, 4]}}), 10, said.append)
    assert said == []


def run_offline(tmp_path, *argv: str) -> subprocess.CompletedProcess:
    """The script offline with an empty Hugging Face cache, expected to refuse (exit 2)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "RAY_ADDRESS"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run(
        [sys.executable, SCRIPT, *argv, "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_imagenet_weights_that_cannot_be_had_stop_the_sweep_before_ray_starts(tmp_path):
    """Offline with an empty cache: the script exits 2 with the fix, having tracked and started nothing.
    (A fresh interpreter: huggingface_hub reads HF_HUB_OFFLINE and HF_HOME when imported.)"""
    proc = run_offline(tmp_path, "--weights", "imagenet", "--archs", "resnet18")
    assert "weights=imagenet: could not load timm's pretrained weights for 'resnet18'" in proc.stderr
    assert "weights=none" in proc.stderr and "Ray" not in proc.stdout.replace("[sweep]", "")
    assert not (tmp_path / "m.db").exists()


def test_clip_weights_that_cannot_be_had_stop_the_sweep_before_ray_starts(tmp_path):
    """The same for a CLIP baseline's open_clip weights: refused up front, with what to do, nothing tracked."""
    argv = ["--archs", "clip_probe", "--set", "clip_model=ViT-B-32-quickgelu", "--set", "clip_pretrained=openai"]
    proc = run_offline(tmp_path, *argv)
    assert "clip_pretrained='openai': could not load open_clip weights for 'ViT-B-32-quickgelu'" in proc.stderr
    assert "clip_pretrained: none" in proc.stderr and "Ray" not in proc.stdout.replace("[sweep]", "")
    assert not (tmp_path / "m.db").exists()


def test_resume_needs_a_sweep_directory(tmp_path, capsys):
    (tmp_path / "sweep-1").mkdir()
    assert main(["--resume", str(tmp_path / "sweep-1")]) == 2
    assert "not a sweep directory (no cvsweep.json)" in capsys.readouterr().err


def test_resume_alone_takes_the_newest_interrupted_sweep_of_its_task_and_lists_the_others(
    tmp_path, capsys, monkeypatch
):
    """`--resume` with no directory looks in the default storage path (~/ray_results); with a storage path,
    there. Finished sweeps and another task's sweeps are not candidates."""
    root = tmp_path / "ray_results"

    def sweep(name: str, age_s: int, **fields) -> Path:
        d = root / name
        d.mkdir(parents=True)
        (d / "cvsweep.json").write_text(json.dumps({"task": "classify", "experiment": "digits", **fields}))
        os.utime(d / "cvsweep.json", (time.time() - age_s,) * 2)
        return d

    sweep("sweep-a", 10, finished=True)  # the newest, but it ended
    older = sweep("sweep-b", 300)
    newer = sweep("sweep-c", 200)
    sweep("detect-d", 100, task="detect")  # python sweeps/detect.py's
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["--resume"]) == 2  # chosen and opened: this fake sweep has no recipe to continue with
    out, err = capsys.readouterr()
    assert f"the newest interrupted classify sweep there is {newer.name} (experiment 'digits')" in out
    assert "1 more interrupted there" in out and str(older) in out and "sweep-a" not in out
    assert "recipe" in err
    for d in (older, newer):  # nothing left to resume: said, naming where it looked
        (d / "cvsweep.json").write_text(json.dumps({"task": "classify", "finished": True}))
    assert main(["--resume", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"--resume {root}: not a sweep directory (no cvsweep.json), nor a storage path with an interrupted" in err


def test_resume_refuses_flags_that_would_change_the_sweep(tmp_path, capsys):
    assert main(["--resume", str(tmp_path), "--archs", "resnet18", "--max-epochs", "9"]) == 2
    err = capsys.readouterr().err
    assert "--archs" in err and "--max-epochs" in err and "cannot change it" in err


def test_a_bad_server_storage_path_and_data_are_reported_together_before_anything_starts(tmp_path, capsys):
    from tests.sweeps.conftest import free_port

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    port = free_port()  # nothing listens there
    argv = ["--data", str(tmp_path / "nope"), "--tracking-uri", f"http://127.0.0.1:{port}"]
    assert main([*argv, "--storage-path", str(blocker / "ray"), "--output-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "3 problems, nothing has started" in err
    assert f"the MLflow tracking server http://127.0.0.1:{port} does not answer" in err
    assert f"--storage-path {blocker / 'ray'}: not a writable directory" in err
    assert f"--data {tmp_path / 'nope'}: no such directory" in err


def test_an_unreadable_image_stops_the_sweep_before_ray_starts(tmp_path, capsys, image_folder):
    (image_folder / "left" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    uri = f"sqlite:///{tmp_path}/m.db"
    assert main(["--data", str(image_folder), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")]) == 2
    err = capsys.readouterr().err
    assert f"{image_folder / 'left' / 'cut.png'}: not an image PIL can read" in err and "--skip-bad-images" in err
    assert not (tmp_path / "m.db").exists()
