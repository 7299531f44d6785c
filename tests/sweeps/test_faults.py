"""Exactly one MLflow child run per trial, with a gap-free epoch history, whatever happens: a trial
raises mid-epoch and Ray Tune retries it; the sweep is interrupted (Ctrl-C) or its driver killed, and
resumed with --resume. Real sweeps. (The tracking server going away mid-sweep: tests/sweeps/test_cluster.py;
the checkpoint directory failing: tests/sweeps/test_storage_faults.py.)"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from tests.conftest import REPO, sweep_cmd, sweep_env
from tests.sweeps.conftest import free_port, wait_for
from tests.sweeps.test_e2e import EVIDENCE_FILES
from trainables import metrics as M
from trainables.config import TrialConfig
from trainables.contracts import CONFIRM_STAGE, SEARCH_STAGE, STAGE_TAG, TRIAL_ID_TAG
from trainables.trainable import FAIL_IN_EPOCH_ENV

pytestmark = pytest.mark.e2e
# Small enough for 2 CPU cores, long enough (3 epochs, no early stopping) to interrupt mid-sweep; the table's
# timings as short as --smoke-test's; no confirmation stage unless a test asks for one (CONFIRM).
SMALL = [
    "--num-samples", "4", "--max-epochs", "3", "--no-asha", "--set", "train_limit=200", "--img-size", "32",
    "--set", "timing_s=0.2", "--set", "confirm=null",
]  # fmt: skip
CONFIRM = ["--set", "confirm={top: 1, seeds: 1}"]  # the best search configuration again with one more seed


def runs_of(client: MlflowClient, experiment: str) -> tuple[list, list]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return [], []
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags]
    return parents, [r for r in runs if MLFLOW_PARENT_RUN_ID in r.data.tags]


def check_exactly_once(client: MlflowClient, experiment: str, trials: int) -> tuple:
    """One parent, one FINISHED child per trial, each with epochs 1..epochs_run once in every curve, its final
    metrics and its evidence; the comparison table on the parent, a row per architecture."""
    parents, children = runs_of(client, experiment)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == trials
    assert len({c.data.tags[TRIAL_ID_TAG] for c in children}) == trials
    for c in children:
        assert c.info.status == "FINISHED", c.info.run_name
        epochs = int(c.data.metrics["epochs_run"])
        for key in M.EPOCH_METRICS:
            steps = sorted(m.step for m in client.get_metric_history(c.info.run_id, key))
            assert steps == list(range(1, epochs + 1)), (c.info.run_name, key, steps)
        missing = [key for key in M.SUMMARY_METRICS if key not in c.data.metrics]  # the trial's final answer
        assert not missing, (c.info.run_name, missing)
        evidence = {a.path.split("/")[-1] for a in client.list_artifacts(c.info.run_id, "evidence")}
        assert evidence == set(EVIDENCE_FILES)
    # The comparison table on the sweep's run: a row per architecture, each the numbers of one of its runs.
    with tempfile.TemporaryDirectory() as d:
        with open(client.download_artifacts(parents[0].info.run_id, "report/comparison.csv", d)) as f:
            rows = list(csv.DictReader(f))
    by_run = {c.info.run_id: c for c in children}
    assert sorted(r["architecture"] for r in rows) == sorted({c.data.params["arch"] for c in children})
    for r in rows:
        run = by_run[r["MLflow run"]]
        assert float(r["test acc (%)"]) == pytest.approx(100 * run.data.metrics[M.TEST_ACC])
        assert float(r["latency b1 median (ms)"]) > 0 and int(r["epochs run"]) == int(run.data.metrics["epochs_run"])
    return parents[0], children


def resume_cmd(sweep_dir: Path) -> list[str]:
    return [sys.executable, str(REPO / "sweeps" / "classify.py"), "--resume", str(sweep_dir), "--address", "local"]


def resume(sweep_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        resume_cmd(sweep_dir), capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, env=env
    )


def test_a_sweep_with_crashes_interrupted_killed_and_resumed_keeps_one_run_per_trial(tmp_path, ray_tmp):
    """Every trial started from scratch raises after one batch of epoch 2 and is retried from epoch 1's
    checkpoint. Once a trial has finished the sweep is interrupted with Ctrl-C and resumed; once the
    confirmation trial (the search's best configuration again, with seed 1) has been retried the resumed
    driver is killed (SIGKILL: nothing is saved on the way out, the last snapshot may be older than the last logged
    epoch, writes queued but not made are in it) and resumed again. One run per trial, the confirmation's
    included, every epoch once, and a trial that had finished is never run again."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    crash = {FAIL_IN_EPOCH_ENV: "2"}  # raises after one batch of epoch 2: retried from epoch 1's checkpoint

    def confirming() -> list:
        return [c for c in runs_of(client, "classify-digits")[1] if c.data.tags.get(STAGE_TAG) == CONFIRM_STAGE]

    def retried(runs: list) -> bool:
        return any(c.data.tags.get("retries") == "1" for c in runs)

    def finished() -> dict[str, int]:
        return {
            c.info.run_id: c.info.end_time for c in runs_of(client, "classify-digits")[1] if c.info.status == "FINISHED"
        }

    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(
        sweep_cmd(tmp_path, uri, *SMALL, *CONFIRM, "--max-failures", "1"),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=sweep_env(ray_tmp, **crash),
    )
    try:
        wait_for(lambda: finished(), "a first trial finished", proc=proc)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    first = (tmp_path / "first.log").read_text()
    assert rc == 130, first[-5000:]
    assert "failed and is retried from its last checkpoint" in first
    assert "resume with: python sweeps/classify.py --resume" in first
    parents, children = runs_of(client, "classify-digits")
    assert parents[0].info.status == "KILLED" and parents[0].data.tags["interrupted"] == "true"
    assert {c.info.status for c in children} == {"FINISHED", "KILLED"}  # the unfinished ones marked so
    done_before = finished()
    assert 1 <= len(done_before) < 4
    (sweep_dir,) = (tmp_path / "ray").glob("sweep-*")

    with open(tmp_path / "second.log", "w") as log:
        # Its own session, so the kill takes the driver and the local Ray it started, and nothing else.
        proc = subprocess.Popen(
            resume_cmd(sweep_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=sweep_env(ray_tmp, **crash),
            start_new_session=True,
        )
        try:
            # it started from scratch in this process (the search ended here): it crashes, and is retried
            wait_for(lambda: retried(confirming()), "the confirmation trial retried", proc=proc)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    parents, children = runs_of(client, "classify-digits")
    assert parents[0].info.status == "RUNNING"  # nobody was left to say the sweep had stopped
    done_before = finished()

    proc3 = resume(sweep_dir.parent, sweep_env(ray_tmp, **crash))  # the storage path: its interrupted sweep
    assert proc3.returncode == 0, proc3.stdout[-5000:] + proc3.stderr[-5000:]
    assert f"the newest interrupted classify sweep there is {sweep_dir.name}" in proc3.stdout
    assert json.loads((sweep_dir / "cvsweep.json").read_text())["finished"] is True  # not offered again
    parent, children = check_exactly_once(client, "classify-digits", trials=5)
    assert parent.info.run_id == parents[0].info.run_id and parent.data.tags["resumes"] == "2"
    (confirm,) = confirming()  # the search's best configuration, trained again with the next seed
    search = [c for c in children if c.data.tags[STAGE_TAG] == SEARCH_STAGE]
    best = max(search, key=lambda c: c.data.metrics[M.BEST_VAL_ACC])
    same = {k: v for k, v in confirm.data.params.items() if k != "seed" and k in TrialConfig.field_names()}
    assert same == {k: best.data.params[k] for k in same} and confirm.data.params["seed"] == "1"
    assert confirm.info.run_name == best.info.run_name + "-seed1" and confirm.data.tags.get("retries") == "1"
    assert int(confirm.data.metrics["epochs_run"]) == 3
    assert parent.data.tags["interrupted"] == "false"
    for c in children:  # trials that had finished were not run again
        if c.info.run_id in done_before:
            assert c.info.end_time == done_before[c.info.run_id], c.info.run_name
    assert sum(c.data.tags.get("retries") == "1" for c in children) >= 2  # crashed, retried, same run
    assert "comparison report:" in proc3.stdout


def test_an_unreachable_tracking_server_stops_the_sweep_before_it_starts(tmp_path, ray_tmp):
    port = free_port()
    uri = f"http://sweeper:s3cret-token@127.0.0.1:{port}"  # nothing listens there; credentials are never shown
    proc = subprocess.run(
        sweep_cmd(tmp_path, uri, "--smoke-test"),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env=sweep_env(ray_tmp),
    )
    assert proc.returncode == 2
    # the credentials went to MLflow's environment variables before anything used the URI
    assert f"the MLflow tracking server http://127.0.0.1:{port} does not answer" in proc.stderr
    assert "s3cret-token" not in proc.stdout + proc.stderr
    assert "Nothing has started" in proc.stderr
    assert "Ray:" not in proc.stdout and not (tmp_path / "ray").exists()
