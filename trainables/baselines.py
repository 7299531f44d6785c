"""Baselines a recipe can name beside timm models: what something cheap reaches before a sweep over deep
networks is paid for.

``hog_svm``: histogram-of-oriented-gradients features (scikit-image's ``hog``) standardised and classified
by an RBF-kernel SVM (scikit-learn's ``SVC``, one-vs-one as libsvm trains it). It fits once on the training
split (no epochs, no augmentation: the training images go through the same eval transform as validation and
test) and reports once. ``clip_zeroshot`` and ``clip_probe`` (``trainables.clip_baselines``) fit and report
the same way (``fit_baseline``).

The fitted HOG + SVM is a torch module like every other model of a sweep (``HogSVM``): images in, one score per
class out, everything it learned in its state dict (the scaler's mean and scale, the support vectors, the
dual coefficients and intercepts), so its checkpoint is saved, logged, loaded with ``weights_only=True``,
timed and served exactly as a network's is. Its scores are scikit-learn's one-vs-rest decision function
(votes of the one-vs-one classifiers plus their confidences, ``SVC.decision_function``; its argmax is
``SVC.predict`` with ``break_ties=True``, as fitted here), computed in torch
from those tensors; the HOG features are computed by scikit-image on the CPU, outside the torch graph, so
FLOPs, ONNX export and Grad-CAM do not apply to it (``OUTSIDE_TORCH`` says why wherever they are skipped).
No Ray, no MLflow here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainables import metrics as M
from trainables.augment import eval_transform
from trainables.config import (  # noqa: F401  (read from here too)
    BASELINE_FAMILY,
    BASELINES,
    CLIP_BASELINES,
    HOG_SVM,
    is_baseline,
)
from trainables.fitted import Fitted, features_of

if TYPE_CHECKING:
    from trainables.config import TrialConfig
    from trainables.contracts import EpochReport, TrialState
    from trainables.data import DatasetSplits

# Eval transform of a baseline: the image resized to img_size, pixel values in [0, 1] (no normalisation).
PREPROCESSING = {
    "interpolation": "bilinear",
    "mean": (0.0, 0.0, 0.0),
    "std": (1.0, 1.0, 1.0),
    "crop_pct": 1.0,
    "crop_mode": "center",
}
OUTSIDE_TORCH = "the HOG + SVM's features are computed by scikit-image (NumPy), outside the torch graph"


class HogSVM(torch.nn.Module):
    """HOG features and a fitted RBF-kernel SVM as one module: (N, 3, H, W) images in [0, 1] in, (N, classes)
    scores out (scikit-learn's one-vs-rest decision function; the largest is the prediction). Built empty
    (``build_baseline``) and filled by its fit (``set_svm``) or ``load_state_dict``, which resizes the fitted
    tensors to the state it is given."""

    outside_torch = OUTSIDE_TORCH

    def __init__(self, num_classes: int, orientations: int = 9, cell: int = 8, block: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("hog_settings", torch.tensor([orientations, cell, block]))
        frozen = {"requires_grad": False}
        for name in ("mean", "scale", "support_vectors", "dual_coef", "intercept", "gamma"):
            self.register_parameter(name, torch.nn.Parameter(torch.empty(0, dtype=torch.float64), **frozen))
        self.register_buffer("n_support", torch.empty(0, dtype=torch.long))

    def features(self, x: torch.Tensor) -> np.ndarray:
        """HOG descriptors of a batch, (N, features), as scikit-image computes them (the gradient of the
        strongest channel at each pixel; L2-Hys block normalisation)."""
        from skimage.feature import hog

        orientations, cell, block = (int(v) for v in self.hog_settings)
        images = x.detach().float().cpu().permute(0, 2, 3, 1).numpy()
        return np.stack(
            [
                hog(
                    im,
                    orientations=orientations,
                    pixels_per_cell=(cell, cell),
                    cells_per_block=(block, block),
                    channel_axis=-1,
                )  # fmt: skip
                for im in images
            ]
        )

    def decision(self, feats: np.ndarray | torch.Tensor) -> torch.Tensor:
        """scikit-learn's ``SVC.decision_function`` (``decision_function_shape='ovr'``) of standardised features."""
        z = (torch.as_tensor(feats, dtype=torch.float64, device=self.mean.device) - self.mean) / self.scale
        kernel = torch.exp(-self.gamma * torch.cdist(z, self.support_vectors).square())
        if self.num_classes == 2:  # scikit-learn's binary SVC: one decision, > 0 for the second class
            d = kernel @ self.dual_coef[0] + self.intercept[0]
            return torch.stack([-d, d], dim=1)
        start = torch.cumsum(self.n_support, 0) - self.n_support
        votes = torch.zeros(len(z), self.num_classes, dtype=torch.float64, device=z.device)
        confidence = torch.zeros_like(votes)
        k = 0
        for i in range(self.num_classes):  # libsvm's one-vs-one layout, as scikit-learn reads it
            si = slice(int(start[i]), int(start[i] + self.n_support[i]))
            for j in range(i + 1, self.num_classes):
                sj = slice(int(start[j]), int(start[j] + self.n_support[j]))
                d = kernel[:, si] @ self.dual_coef[j - 1, si] + kernel[:, sj] @ self.dual_coef[i, sj]
                d = d + self.intercept[k]
                votes[:, i] += d > 0
                votes[:, j] += d <= 0
                confidence[:, i] += d
                confidence[:, j] -= d
                k += 1
        return votes + confidence / (3 * (confidence.abs() + 1))  # sklearn.utils.multiclass._ovr_decision_function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.support_vectors.numel() == 0:
            raise RuntimeError("this HOG + SVM is not fitted: fit_baseline or load_state_dict first")
        return self.decision(self.features(x)).to(device=x.device, dtype=torch.float32)

    def set_svm(self, scaler, svc) -> None:  # noqa: ANN001 - a fitted StandardScaler and SVC
        """Copy a fitted scikit-learn scaler and SVC (gamma given as a number) into this module."""
        if list(svc.classes_) != list(range(self.num_classes)):
            raise ValueError(
                f"hog_svm: the training split has classes {list(svc.classes_)}, "
                f"expected all of 0..{self.num_classes - 1}"
            )
        values = {
            "mean": scaler.mean_,
            "scale": scaler.scale_,
            "support_vectors": svc.support_vectors_,
            "dual_coef": svc.dual_coef_,
            "intercept": svc.intercept_,
            "gamma": np.array([svc.gamma], dtype=np.float64),
        }
        for name, v in values.items():
            getattr(self, name).data = torch.as_tensor(np.asarray(v, dtype=np.float64)).clone()
        self.n_support = torch.as_tensor(svc.n_support_, dtype=torch.long).clone()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        for name, t in [*self._parameters.items(), *self._buffers.items()]:  # a fitted SVM's sizes come with it
            v = state_dict.get(prefix + name)
            if t is not None and v is not None and t.shape != v.shape:
                t.data = torch.empty_like(v)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def build_baseline(arch: str, num_classes: int, cfg: TrialConfig | None = None) -> torch.nn.Module:
    """An unfitted baseline of this name; ``cfg`` gives its settings (defaults otherwise; a loaded state
    dict brings its own)."""
    if arch == HOG_SVM:
        if cfg is None:
            return HogSVM(num_classes)
        return HogSVM(num_classes, cfg.hog_orientations, cfg.hog_cell, cfg.hog_block)
    if arch in CLIP_BASELINES:
        raise ValueError(f"{arch}: built from a checkpoint (trainables.models.load_model) or by its fit, not empty")
    raise ValueError(f"arch: no baseline named {arch!r}; baselines: {', '.join(BASELINES)}")


def from_state(arch: str, num_classes: int, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """An empty baseline of the shape a checkpoint holds (a CLIP one reads its model config from it), for
    ``load_state_dict``."""
    if arch in CLIP_BASELINES:
        from trainables.clip_baselines import from_state as clip_from_state

        return clip_from_state(num_classes, state)
    return build_baseline(arch, num_classes)


def data_config(img_size: int) -> dict[str, Any]:
    """A baseline's eval transform settings, in timm's data-config shape (trainables.augment.eval_transform)."""
    return {"input_size": (3, img_size, img_size), **PREPROCESSING}


def fit_baseline(
    cfg: TrialConfig, splits: DatasetSplits, device: torch.device, resume: TrialState | None = None
) -> Iterator[EpochReport]:
    """Fit the baseline ``cfg.arch`` names on the training split (nothing is chosen on test) and report once,
    as epoch 1, with the metrics and state a network's best epoch has (as ``trainables.engine.fit`` reports
    epochs). A trial restored after its report has nothing left to do."""
    from trainables.contracts import BestEpoch, EpochReport, TrialInfo, TrialState
    from trainables.latency import measure_latency
    from trainables.system import SystemMeter

    if resume is not None:
        return
    from trainables.clip_baselines import fit_clip

    fits = {HOG_SVM: _fit_hog_svm, **dict.fromkeys(CLIP_BASELINES, fit_clip)}
    with SystemMeter(torch.get_num_threads(), device) as meter:  # the fit and its evaluation: no loader
        f = fits[cfg.arch](cfg, splits, device)
        system = meter.epoch()
    k, transform = splits.num_classes, eval_transform(f.dc)

    def scored(samples) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        x, y = features_of(samples, transform, f.features)
        return f.scores(x), y

    train = M.classification_metrics(f.train[1], f.scores(f.train[0]).argmax(1), k)
    val_scores, y_val = scored(splits.val)
    val = M.classification_metrics(y_val, val_scores.argmax(1), k)
    test_scores, y_test = scored(splits.test)
    pred = test_scores.argmax(1)
    test = M.classification_metrics(y_test, pred, k, scores=test_scores)
    report = M.per_class_report(y_test, pred, k)
    report["true"], report["pred"] = y_test.tolist(), pred.tolist()
    size = int(f.dc["input_size"][-1])
    timed_on = "cpu" if hasattr(f.model, "outside_torch") else device  # where its work happens
    latency_ms, _, _ = measure_latency(f.model, size, timed_on, warmup=5, min_repeats=20, min_seconds=0.3)
    n_params = sum(p.numel() for p in f.model.parameters())
    info = TrialInfo(
        num_classes=k,
        input_size=size,
        interpolation=f.dc["interpolation"],
        mean=tuple(f.dc["mean"]),
        std=tuple(f.dc["std"]),
        crop_pct=f.dc["crop_pct"],
        param_count=n_params,
        trainable_param_count=sum(p.numel() for p in f.model.parameters() if p.requires_grad),
        device=str(next(f.model.parameters()).device),
        amp_active=False,
        channels_last=False,
        loader_workers=0,
        weights_source=f.source,
    )
    weights = {n: t.detach().to("cpu", copy=True) for n, t in f.model.state_dict().items()}
    best = BestEpoch(
        epoch=1,
        val_acc=val["acc"],
        test=M.as_test(test),
        test_report=report,
        classes=list(splits.classes),
        model=weights,
    )
    metrics = {
        M.EPOCH: 1,
        M.TRAIN_ACC: train["acc"],
        M.TRAIN_F1: train["f1"],
        M.VAL_ACC: val["acc"],
        M.VAL_F1: val["f1"],
        M.EPOCH_TIME: f.fit_time_s,
        M.THROUGHPUT: len(f.train[1]) / f.fit_time_s,
        M.LATENCY: latency_ms,
        M.BEST_VAL_ACC: val["acc"],
        M.BEST_EPOCH: 1,
        M.TRAIN_TIME: f.fit_time_s,
        **best["test"],
        **system,
    }
    from trainables.augment import eval_config

    state = TrialState(
        epoch=1,
        num_updates=0,
        model=weights,
        optimizer={},
        best=best,
        train_time_s=f.fit_time_s,
        info=info,
        preprocessing=eval_config(f.dc),
    )
    yield EpochReport(metrics=metrics, state=state, improved=True)


def _fit_hog_svm(cfg: TrialConfig, splits: DatasetSplits, device: torch.device) -> Fitted:
    """HOG features of the training split, standardised, and an RBF SVC fitted on them; on the CPU."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    model = build_baseline(HOG_SVM, splits.num_classes, cfg)
    dc = data_config(cfg.img_size)
    t0 = time.perf_counter()
    x_train, y_train = features_of(splits.train, eval_transform(dc), model.features)
    scaler = StandardScaler().fit(x_train)
    z = scaler.transform(x_train)
    gamma = cfg.svm_gamma or 1.0 / (z.shape[1] * z.var())  # scikit-learn's gamma='scale', as a number
    # break_ties: SVC.predict is then the argmax of the scores this module returns, ties and all
    svc = SVC(C=cfg.svm_c, kernel="rbf", gamma=gamma, break_ties=True, random_state=cfg.seed).fit(z, y_train)
    model.set_svm(scaler, svc)
    source = f"fitted by scikit-learn SVC ({len(svc.support_vectors_)} support vectors, gamma {gamma:.4g})"
    return Fitted(
        model.eval(),
        dc,
        model.features,
        lambda x: model.decision(x).cpu().numpy(),
        (x_train, y_train),
        time.perf_counter() - t0,
        source,
    )
