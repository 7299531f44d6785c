"""A sweep's child runs read straight from MLflow's SQL tracking store, as plain rows. MLflow's public search
(``mlflow.search_runs``) has no way to ask for less than whole runs, and its SQLAlchemy store turns every
parameter, tag and metric row into two objects (its ORM's, then an entity): over 10,000 runs of 34
parameters, 9 tags and 19 metrics that was most of the report's time (BENCHMARKS.md). Here the same rows
come from four SELECTs on the store's own engine and tables, with search_runs' filter and order, and no
object per row. Internals used: the client's store (``_get_store``), ``SqlAlchemyStore.engine`` and the
tables of its ORM models (``runs``, ``params``, ``tags``, ``latest_metrics``). ``tests/test_compat.py``
fails, naming the name and MLflow's version, when one moves or MLflow leaves ``CHECKED``; the test there also
checks the rows against ``mlflow.search_runs`` on a real SQLite store.

Any other store (a tracking server, the file store, a workspace-aware store) gets None: use the public search.
MLflow is imported inside the functions: importing this module imports nothing of MLflow's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

CHECKED = {"mlflow": ">=3.17,<3.18"}  # pyproject admits mlflow >=3.5,<4; these internals were read in 3.17
# The ORM model of each table read (mlflow.store.tracking.dbmodels.models) and the columns read from it.
COLUMNS = {
    "SqlRun": ("run_uuid", "experiment_id", "status", "artifact_uri", "start_time", "end_time"),
    "SqlLatestMetric": ("run_uuid", "key", "value", "is_nan"),
    "SqlParam": ("run_uuid", "key", "value"),
    "SqlTag": ("run_uuid", "key", "value"),
}
STAGE = "lifecycle_stage"  # SqlRun's column that says whether a run is deleted: read as a filter only


class RunRows(NamedTuple):
    """A search's runs as plain rows (tuples, or SQLAlchemy's Rows, which unpack the same), newest first
    (search_runs' default order)."""

    info: list[Sequence]  # (run_id, experiment_id, status, artifact_uri, start_time ms, end_time ms or None)
    metrics: list[Sequence]  # (run_id, key, latest value)
    params: list[Sequence]  # (run_id, key, value)
    tags: list[Sequence]  # (run_id, key, value)


def sql_store():  # noqa: ANN201 - an mlflow SqlAlchemyStore, or None
    """The tracking URI's store when it is MLflow's plain SQLAlchemy store (SQLite, PostgreSQL, MySQL)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import _get_store

    store = _get_store()
    return store if type(store) is SqlAlchemyStore else None  # a subclass may filter runs (workspaces)


def child_runs(experiment_id: str, parent_run_id: str) -> RunRows | None:
    """The active runs of ``experiment_id`` tagged as children of ``parent_run_id``, as
    ``mlflow.search_runs(filter_string="tags.`mlflow.parentRunId` = '<id>'")`` finds them; None when the
    store is not a plain SQL store."""
    store = sql_store()
    if store is None:
        return None
    from mlflow.entities import LifecycleStage
    from mlflow.store.tracking.dbmodels import models
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
    from sqlalchemy import and_, select

    runs, latest, params, tags = (getattr(models, name).__table__ for name in COLUMNS)
    is_child = and_(tags.c.run_uuid == runs.c.run_uuid, tags.c.key == MLFLOW_PARENT_RUN_ID)
    ids = (
        select(runs.c.run_uuid)
        .join(tags, is_child)
        .where(
            runs.c.experiment_id == int(experiment_id),
            runs.c[STAGE] == LifecycleStage.ACTIVE,
            tags.c.value == parent_run_id,
        )
    )

    def of_children(table, names):  # noqa: ANN001, ANN202 - a sqlalchemy Table; a Select
        return select(*(table.c[n] for n in names)).where(table.c.run_uuid.in_(ids))

    with store.engine.connect() as db:
        info = db.execute(of_children(runs, COLUMNS["SqlRun"]).order_by(runs.c.start_time.desc(), runs.c.run_uuid))
        metrics = db.execute(of_children(latest, COLUMNS["SqlLatestMetric"])).all()
        return RunRows(
            info=[(run, str(exp), *rest) for run, exp, *rest in info.all()],
            metrics=[(run, key, float("nan") if is_nan else value) for run, key, value, is_nan in metrics],
            params=db.execute(of_children(params, COLUMNS["SqlParam"])).all(),
            tags=db.execute(of_children(tags, COLUMNS["SqlTag"])).all(),
        )
