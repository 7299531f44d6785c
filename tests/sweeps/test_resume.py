"""What a resumed sweep does with runs of trials that its saved state does not know."""

from __future__ import annotations

import mlflow
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweeps.run import forget_unsaved_trials
from trainables.contracts import TRIAL_ID_TAG


def test_runs_of_trials_the_saved_state_lost_are_deleted_and_named(tmp_path, capsys):
    """A trial started after the last state Tune could save (storage turned read-only or full, driver
    killed) has a run that no resumed trial continues: it is deleted, said and recorded; the others stay."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    exp = client.create_experiment("resume")
    parent = client.create_run(exp, run_name="sweep-1").info.run_id

    def child(trial: str, status: str) -> str:
        run = client.create_run(exp, run_name=f"t-{trial}", tags={MLFLOW_PARENT_RUN_ID: parent, TRIAL_ID_TAG: trial})
        client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    kept = [child("a", "FINISHED"), child("b", "KILLED")]
    lost = child("c", "KILLED")  # started after the last snapshot, never checkpointed
    try:
        with mlflow.start_run(run_id=parent):
            assert forget_unsaved_trials({"a", "b"}, parent) == [lost]
            assert forget_unsaved_trials({"a", "b"}, parent) == []  # a second resume finds nothing more
            # even a finished one: Tune's count of trials no longer has it, the search runs its configuration again
            done = child("d", "FINISHED")
            assert forget_unsaved_trials({"a", "b"}, parent) == [done]
        alive = {r.info.run_id for r in client.search_runs([exp], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}'")}
        assert alive == set(kept)
        deleted = client.search_runs([exp], run_view_type=ViewType.DELETED_ONLY)
        assert {r.info.run_id for r in deleted} == {lost, done}  # MLflow's delete: still there to restore
        assert client.get_run(parent).data.tags["forgotten_runs"] == f"{lost},{done}"
        said = capsys.readouterr().out
        assert f"trial c (t-c) started after the last state the sweep could save: its run {lost} is deleted" in said
    finally:
        mlflow.set_tracking_uri(None)
