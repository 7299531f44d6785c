"""The HOG + SVM baseline: scikit-image's features and scikit-learn's SVC, as a torch module that saves,
loads and scores exactly as the fitted scikit-learn model does; fitted once on the real digits."""

import io

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from analysis.profile import NOT_APPLICABLE, profile_model
from sweeps.config import ConfigError, config_from_dict, trial_params
from trainables.baselines import HogSVM, fit_baseline
from trainables.config import TrialConfig
from trainables.data import load_digits
from trainables.models import build_model, data_config, family_of, load_model


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_scores_are_scikit_learns_decision_function(classes):
    rng = np.random.default_rng(classes)
    x = rng.normal(size=(120, 7)) + np.repeat(np.arange(classes), 120 // classes + 1)[:120, None] * 0.7
    y = np.repeat(np.arange(classes), 120 // classes + 1)[:120]
    scaler = StandardScaler().fit(x)
    svc = SVC(C=3.0, gamma=0.2, break_ties=True).fit(scaler.transform(x), y)
    model = HogSVM(classes)
    model.set_svm(scaler, svc)
    probe = rng.normal(size=(40, 7)) * 2
    ours = model.decision(probe).numpy()
    theirs = svc.decision_function(scaler.transform(probe))
    if classes == 2:
        np.testing.assert_allclose(ours[:, 1], theirs, atol=1e-9)
    else:
        np.testing.assert_allclose(ours, theirs, atol=1e-9)
    # the prediction is scikit-learn's (one-vs-one votes, ties broken by the confidences)
    np.testing.assert_array_equal(ours.argmax(1), svc.predict(scaler.transform(probe)))


def test_fits_the_digits_once_and_reloads_from_its_state_dict(digits):
    cfg = TrialConfig(arch="hog_svm", img_size=32, max_epochs=4)
    reports = list(fit_baseline(cfg, digits, torch.device("cpu")))
    assert len(reports) == 1  # one report, whatever max_epochs says
    r = reports[0]
    assert r.metrics["epoch"] == 1 and r.metrics["best_epoch"] == 1
    # scikit-learn's own digits example reports about 97% for an SVM on the raw 8x8 pixels
    assert r.metrics["val_acc"] > 0.95 and r.metrics["test_acc"] > 0.95
    assert "lr" not in r.metrics and "train_loss" not in r.metrics  # nothing an SVM does not have
    # what the fit asked of the machine; no DataLoader, so no data-wait share
    assert r.metrics["system/cpu_utilization_percentage"] > 0 and r.metrics["system/peak_rss_megabytes"] > 100
    assert "system/data_wait_percentage" not in r.metrics
    state = r.state
    assert state["best"]["test_report"]["confusion"] and len(state["best"]["test_report"]["pred"]) == len(digits.test)
    assert "support vectors" in state["info"]["weights_source"]

    # what a served model goes through: torch.save, weights_only load, a fresh module of that name
    buf = io.BytesIO()
    torch.save(state["best"]["model"], buf)
    buf.seek(0)
    loaded = build_model("hog_svm", 10, 32)
    loaded.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.rand(5, 3, 32, 32)
    fitted = build_model("hog_svm", 10, 32)
    fitted.load_state_dict(state["best"]["model"])
    assert torch.equal(loaded(x), fitted(x))
    assert data_config(loaded, 32)["mean"] == (0.0, 0.0, 0.0)

    # a trial restored after its one report has nothing left to do
    assert list(fit_baseline(cfg, digits, torch.device("cpu"), resume=state)) == []

    # the cost columns that do not apply say so
    prof = profile_model(loaded.eval(), 32, timing_s=0.05)
    assert prof.flops is None and prof.macs is None and prof.params > 0
    assert prof.onnx_latency_ms_median is None and prof.onnx_note.startswith(NOT_APPLICABLE)
    assert prof.latency_ms_median > 0 and prof.throughput_ips > 0


def test_an_unfitted_baseline_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        build_model("hog_svm", 10, 32)(torch.rand(1, 3, 32, 32))


def test_recipe_keeps_each_setting_to_the_architectures_it_belongs_to():
    cfg = config_from_dict({"space": {"arch": ["hog_svm", "resnet18"], "lr": [1e-3, 3e-3], "svm_c": [1, 10]}})
    assert family_of("hog_svm") == "baseline"
    grid = cfg.grid()
    assert {"arch": "hog_svm", "svm_c": 1.0} in grid and {"arch": "resnet18", "lr": 1e-3} in grid
    assert len(grid) == 4  # two SVMs (no learning rate), two networks (no C)
    params = trial_params({"arch": "hog_svm", "max_epochs": 4, "seed": 0})
    assert "svm_c" in params and "hog_cell" in params
    assert not {"lr", "freeze", "augment", "batch_size", "weights"} & set(params)
    assert "svm_c" not in trial_params({"arch": "resnet18", "max_epochs": 4, "seed": 0})

    with pytest.raises(ConfigError, match=r"space.svm_c: only used when arch is 'hog_svm'"):
        config_from_dict({"space": {"arch": ["resnet18"], "svm_c": [1, 10]}})
    with pytest.raises(ConfigError, match=r"space.lr: only used when arch is none of 'hog_svm', 'clip_zeroshot'"):
        config_from_dict({"space": {"arch": "hog_svm", "lr": 1e-3}})
    with pytest.raises(ConfigError, match=r"a HOG block of 3 cells of 16 px must fit in the 32 px image"):
        config_from_dict({"space": {"arch": "hog_svm", "hog_cell": 16, "hog_block": 3}})
    with pytest.raises(ConfigError, match=r"svm_c: must be > 0"):
        config_from_dict({"space": {"arch": "hog_svm", "svm_c": 0}})


def tiny_clip_trial(arch: str, **settings) -> TrialConfig:
    """A CLIP baseline on the test-sized open_clip config this project ships, random weights: nothing fetched."""
    return TrialConfig(arch=arch, clip_model="cvsweep-tiny", clip_pretrained="none", max_epochs=4, **settings)


def test_clip_zero_shot_scores_each_class_by_its_prompts_text_embedding(digits):
    import open_clip

    from trainables.clip_baselines import create_clip

    prompts = "a photo of the number {}.|a drawing of a {}."
    r = next(fit_baseline(tiny_clip_trial("clip_zeroshot", clip_prompts=prompts), digits, torch.device("cpu")))
    assert r.metrics["epoch"] == 1 and "zero-shot, 2 prompt template(s)" in r.state["info"]["weights_source"]
    assert r.state["info"]["weights_source"].startswith("random init")
    state = r.state["best"]["model"]
    # the same random CLIP again (the trial's seed), its text tower read directly: one row per class, the mean of
    # the class's normalised prompt embeddings, normalised, times CLIP's logit scale
    torch.manual_seed(0)
    clip = create_clip("cvsweep-tiny", "none").eval()
    tokenizer = open_clip.get_tokenizer("cvsweep-tiny")
    with torch.no_grad():
        for c in ("0", "7"):
            texts = [t.format(c) for t in prompts.split("|")]
            e = clip.encode_text(tokenizer(texts), normalize=True).mean(0)
            want = clip.logit_scale.exp() * e / e.norm()
            torch.testing.assert_close(state["head.weight"][int(c)], want, rtol=1e-4, atol=1e-5)
    assert not state["head.bias"].any()
    # the checkpoint rebuilds the classifier (its open_clip config travels with it) and predicts as logged
    model = load_model("clip_zeroshot", 10, None, state)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        f = clip.visual(x)
        torch.testing.assert_close(model(x), (f / f.norm(dim=-1, keepdim=True)) @ state["head.weight"].T)


def test_clip_linear_probe_is_scikit_learns_logistic_regression_on_clip_features(digits):
    from sklearn.linear_model import LogisticRegression

    r = next(fit_baseline(tiny_clip_trial("clip_probe", probe_c=0.5), digits, torch.device("cpu")))
    assert "LogisticRegression (C=0.5)" in r.state["info"]["weights_source"]
    model = load_model("clip_probe", 10, None, r.state["best"]["model"])
    x = torch.rand(16, 3, 32, 32)
    with torch.no_grad():
        feats = model.features(x).numpy()
        logits = model(x).numpy()
    lr = LogisticRegression(C=0.5, max_iter=2000)
    lr.coef_, lr.intercept_ = model.head.weight.detach().numpy(), model.head.bias.detach().numpy()
    lr.classes_ = np.arange(10)
    np.testing.assert_array_equal(logits.argmax(1), lr.predict(feats))
    # random CLIP features still carry something a probe can use; its accuracy is above chance (10 classes)
    assert r.metrics["val_acc"] > 0.2
    # every cost column applies: CLIP runs in torch
    prof = profile_model(model, 32, timing_s=0.05, onnx=False)
    assert prof.flops > 0 and prof.params == sum(p.numel() for p in model.parameters())


def test_clip_settings_are_checked(tmp_path):
    from trainables.clip_baselines import create_clip

    with pytest.raises(ValueError, match=r"open_clip has no model named 'ViT-B-99'"):
        create_clip("ViT-B-99", "none")
    with pytest.raises(FileNotFoundError, match=r"no such weights file"):
        create_clip("cvsweep-tiny", str(tmp_path / "missing.bin"))
    # a local weights file is what open_clip loads (weights_only), nothing fetched
    torch.manual_seed(1)
    saved = create_clip("cvsweep-tiny", "none").state_dict()
    torch.save(saved, tmp_path / "tiny.pt")
    loaded = create_clip("cvsweep-tiny", str(tmp_path / "tiny.pt")).state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    with pytest.raises(ConfigError, match=r"clip_prompts: '\|'-separated templates, each with"):
        config_from_dict({"space": {"arch": "clip_zeroshot", "clip_prompts": "a photo"}})
    with pytest.raises(ConfigError, match=r"space.probe_c: only used when arch is 'clip_probe'"):
        config_from_dict({"space": {"arch": "clip_zeroshot", "probe_c": [0.1, 1]}})
    params = trial_params({"arch": "clip_probe", "max_epochs": 4, "seed": 0})
    assert {"clip_model", "clip_pretrained", "probe_c"} <= set(params)
    assert not {"img_size", "clip_prompts", "lr", "svm_c"} & set(params)  # CLIP takes its own input size
