import dataclasses
import io
import time

import numpy as np
import pytest
import torch

from trainables import metrics as M
from trainables.config import TrialConfig
from trainables.contracts import BestEpoch, TrialInfo, TrialState
from trainables.data import ImageSamples, limit_train, load_digits
from trainables.engine import build, fit


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
        assert r.metrics[M.TEST_ACC] <= r.metrics[M.TEST_TOP5] <= 1  # 10 classes: top-5 is reported
    # training time adds up every epoch's time
    times = [r.metrics[M.TRAIN_TIME] for r in reports]
    assert times == pytest.approx(list(np.cumsum([r.metrics[M.EPOCH_TIME] for r in reports])))
    # the best epoch is the one with the highest validation accuracy, and its test numbers are carried
    best = max(reports, key=lambda r: r.metrics[M.VAL_ACC])
    last = reports[-1].metrics
    assert last[M.BEST_VAL_ACC] == best.metrics[M.VAL_ACC]
    assert last[M.TEST_ACC] == best.metrics[M.TEST_ACC]
    # it learns: better than chance (10 classes) on validation
    assert last[M.BEST_VAL_ACC] > 0.3
    # warm-up then cosine decay to zero at the last update
    assert reports[0].metrics[M.LR] > reports[1].metrics[M.LR] > reports[2].metrics[M.LR] == pytest.approx(0, abs=1e-9)
    # the state saved with each checkpoint is the one the contract declares, read by sweeps and analysis
    state = reports[-1].state
    assert set(state) == set(TrialState.__annotations__)
    assert set(state["best"]) == set(BestEpoch.__annotations__) and set(state["info"]) == set(TrialInfo.__annotations__)


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


def test_gradual_holds_the_backbone_for_its_epochs_then_trains_it(small_digits):
    """freeze='gradual', gradual_epochs=1: epoch 1 trains the head alone (backbone weights and batch-norm
    statistics exactly as initialised, weight decay included); epoch 2 trains the backbone too."""
    cfg = _cfg(arch="resnet18", freeze="gradual", gradual_epochs=1, max_epochs=2)
    keys = ("layer1.0.conv1.weight", "layer4.1.conv2.weight", "bn1.running_mean", "layer2.0.bn1.weight", "fc.weight")
    initial = build(cfg, small_digits, torch.device("cpu")).model.state_dict()  # same seed, same init
    initial = {k: initial[k].clone() for k in keys}
    # the state holds live references to the model's tensors: copy each epoch's before the next runs
    per_epoch = [{k: r.state["model"][k].clone() for k in keys} for r in fit(cfg, small_digits, torch.device("cpu"))]
    assert len(per_epoch) == 2
    after1, after2 = per_epoch
    for k in keys[:-1]:
        assert torch.equal(after1[k], initial[k]), f"{k} moved while the backbone was held"
        assert not torch.equal(after2[k], after1[k]), f"{k} did not train after the backbone was released"
    assert not torch.equal(after1["fc.weight"], initial["fc.weight"])  # the head trained from epoch 1


def test_a_gradual_trial_resumed_while_held_releases_the_backbone_on_time(small_digits):
    """Restored from its epoch-1 checkpoint (backbone held, no optimizer state for it yet), a gradual
    trial's epoch 2 (backbone released) is the uninterrupted run's epoch 2."""
    cfg = _cfg(arch="resnet18", freeze="gradual", gradual_epochs=1, max_epochs=2)
    cpu = torch.device("cpu")
    straight = []
    for r in fit(cfg, small_digits, cpu):
        straight.append((r.metrics, r.state["model"]["layer1.0.conv1.weight"].clone()))
    buf = io.BytesIO()
    torch.save(next(iter(fit(cfg, small_digits, cpu))).state, buf)
    buf.seek(0)
    (resumed,) = list(fit(cfg, small_digits, cpu, resume=torch.load(buf, weights_only=True)))
    assert resumed.metrics[M.EPOCH] == 2
    for k in (M.TRAIN_LOSS, M.VAL_LOSS, M.LR):
        assert resumed.metrics[k] == pytest.approx(straight[1][0][k], rel=1e-5, abs=1e-7), k
    assert not torch.equal(straight[0][1], straight[1][1])  # the backbone trained in epoch 2 ...
    assert torch.allclose(resumed.state["model"]["layer1.0.conv1.weight"], straight[1][1], atol=1e-6)  # ... alike


def test_the_new_head_starts_the_same_way_in_every_family(small_digits):
    """EfficientNet's own head init draws U(+-1/sqrt(num_classes)) and starts random-weight training with
    large logits (on the digits 78% against 92% at std 0.02); the trial starts every family's head as timm
    starts ViT and ConvNeXt heads, and a recipe can keep the model's own."""
    stds = {}
    for arch in ("efficientnet_b0", "resnet18", "convnext_atto"):
        head = build(TrialConfig(arch=arch), small_digits, torch.device("cpu")).model.get_classifier()
        stds[arch] = head.weight.std().item()
        assert not head.bias.any()
    assert all(0.017 < s < 0.023 for s in stds.values()), stds
    own = build(TrialConfig(arch="efficientnet_b0", head_init_std=None), small_digits, torch.device("cpu"))
    assert own.model.get_classifier().weight.std().item() > 0.15  # U(+-1/sqrt(10)): std 0.18


@dataclasses.dataclass(frozen=True)
class _SlowImages(ImageSamples):
    """Training images that take 20 ms each to load, as a slow disk would: a starved training loop."""

    def load(self, i: int):
        time.sleep(0.02)
        return super().load(i)


def test_each_epoch_says_what_it_asked_of_the_machine_and_a_starved_loop_shows(small_digits):
    """System metrics per epoch (logged under MLflow's system/): data-wait share, CPU use of the cores the
    trial has, peak memory; a loader that cannot keep up shows as most of the loop spent waiting."""
    cfg = _cfg(max_epochs=1, arch="resnet18", augment="none")
    (fast,) = [r.metrics for r in fit(cfg, small_digits, torch.device("cpu"))]
    slow_data = dataclasses.replace(small_digits, train=_SlowImages(**vars(small_digits.train)))
    (slow,) = [r.metrics for r in fit(cfg, slow_data, torch.device("cpu"))]
    for m in (fast, slow):
        assert {M.SYSTEM_DATA_WAIT, M.SYSTEM_CPU, M.SYSTEM_PEAK_RSS} <= set(m)
        assert not {M.SYSTEM_GPU_UTIL, M.SYSTEM_GPU_PEAK_MEMORY} & set(m)  # CUDA only
        assert 0 <= m[M.SYSTEM_DATA_WAIT] <= 100 and m[M.SYSTEM_CPU] > 0
        assert m[M.SYSTEM_PEAK_RSS] > 100  # torch alone is more than 100 MB resident
    # 150 images x 20 ms = 3 s of waiting, against a fraction of a second of tiny-model steps
    assert slow[M.SYSTEM_DATA_WAIT] > 50 > fast[M.SYSTEM_DATA_WAIT]
