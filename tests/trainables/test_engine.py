import io

import pytest
import torch

from trainables import metrics as M
from trainables.config import TrialConfig
from trainables.data import limit_train, load_digits
from trainables.engine import fit


@pytest.fixture(scope="module")
def small_digits():
    return limit_train(load_digits(), 150, seed=0)


def _cfg(**kw) -> TrialConfig:
    base = dict(
        arch="convnext_atto",
        img_size=32,
        max_epochs=3,
        batch_size=32,
        lr=3e-3,
        augment="light",
        warmup_epochs=0.5,
    )
    return TrialConfig(**{**base, **kw})


def test_each_epoch_reports_curves_and_the_best_epochs_test_metrics(small_digits):
    reports = list(fit(_cfg(), small_digits, torch.device("cpu")))
    assert [r.metrics[M.EPOCH] for r in reports] == [1, 2, 3]
    for r in reports:
        assert set(M.EPOCH_METRICS) | set(M.SUMMARY_METRICS) <= set(r.metrics)
        assert 0 <= r.metrics[M.TEST_F1] <= 1 and r.metrics[M.THROUGHPUT] > 0
    # the best epoch is the one with the highest validation accuracy, and its test numbers are carried
    best = max(reports, key=lambda r: r.metrics[M.VAL_ACC])
    last = reports[-1].metrics
    assert last[M.BEST_VAL_ACC] == best.metrics[M.VAL_ACC]
    assert last[M.TEST_ACC] == best.metrics[M.TEST_ACC]
    # it learns: better than chance (10 classes) on validation
    assert last[M.BEST_VAL_ACC] > 0.3
    # warm-up then cosine decay to zero at the last update
    assert reports[0].metrics[M.LR] > reports[1].metrics[M.LR] > reports[2].metrics[M.LR] == pytest.approx(0, abs=1e-9)


def test_resuming_from_a_saved_state_continues_the_same_run(small_digits):
    """A trial restored from its epoch-1 checkpoint (saved and loaded as Tune does) reproduces the
    uninterrupted run's later epochs exactly: same data order, augmentation, schedule and weights."""
    straight = [r.metrics for r in fit(_cfg(), small_digits, torch.device("cpu"))]
    first = next(iter(fit(_cfg(), small_digits, torch.device("cpu"))))
    buf = io.BytesIO()
    torch.save(first.state, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = [r.metrics for r in fit(_cfg(), small_digits, torch.device("cpu"), resume=state)]
    assert [m[M.EPOCH] for m in resumed] == [2, 3]
    for a, b in zip(straight[1:], resumed, strict=True):
        for k in (M.TRAIN_LOSS, M.VAL_ACC, M.VAL_LOSS, M.LR, M.BEST_VAL_ACC, M.TEST_ACC):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k
