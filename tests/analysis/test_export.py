"""Exports of a trained classifier: read back from their files, they give PyTorch's logits on real images."""

import json

import numpy as np
import pytest
import torch

from analysis.champion import Classifier
from analysis.export import INPUT, META_FILE, PARITY_FILE, export, onnx_latency, onnx_session, parity, to_onnx
from trainables.augment import eval_config
from trainables.data import load_digits
from trainables.gradcam import choose
from trainables.models import build_model, data_config


@pytest.fixture(scope="module")
def images():
    digits = load_digits()
    return [(f"val-{i}", digits.val.load(i)) for i in choose(digits.val.labels, 10)], digits.classes


def classifier(arch: str, classes: list[str], size: int = 32) -> Classifier:
    torch.manual_seed(0)
    model = build_model(arch, len(classes), size).eval()
    return Classifier(model, arch, classes, eval_config(data_config(model, size)), "0" * 32, "a test model")


@pytest.mark.parametrize(
    "arch, dynamo",
    [("efficientnet_b0", False), ("vit_tiny_patch16_224", False), ("resnet18", True)],  # dynamo: torch.export's
)
def test_onnx_and_torchscript_files_give_pytorchs_logits_on_real_images(images, arch, dynamo, tmp_path):
    pictures, classes = images
    clf = classifier(arch, classes)
    result = export(clf, pictures, tmp_path, dynamo=dynamo, progress=lambda _: None)
    assert result["onnx"]["exporter"] == ("torch.export-based" if dynamo else "TorchScript-based")
    for kind in ("onnx", "torchscript"):
        r = result[kind]
        assert r["ok"] and r["images"] == len(pictures) == r["top1_agree"], (kind, r)
        assert 0 <= r["max_abs_logit_diff"] <= r["tolerance"]
        assert (tmp_path / r["file"]).stat().st_size > 1e5
    assert json.loads((tmp_path / PARITY_FILE).read_text()) == json.loads(json.dumps(result))
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["classes"] == classes and meta["preprocessing"] == clf.preprocessing and meta["arch"] == arch


def test_the_onnx_graph_takes_any_batch_size(images, tmp_path):
    pictures, classes = images
    clf = classifier("convnext_atto", classes)
    path = to_onnx(clf.model, 32, tmp_path / "m.onnx")
    session = onnx_session(path, threads=1)
    x = torch.stack([clf.transform()(img) for _, img in pictures])
    for n in (1, 3, len(pictures)):
        got = session.run(None, {INPUT: x[:n].numpy()})[0]
        with torch.inference_mode():
            assert parity(clf.model(x[:n]).numpy(), got)["ok"]
    median, p90, repeats = onnx_latency(path, 32, threads=1)
    assert 0 < median <= p90 and repeats >= 30


def test_parity_is_missed_by_a_logit_off_by_more_than_the_tolerance_or_a_different_top1():
    reference = np.array([[10.0, 2.0, 0.0], [0.0, 1.0, 3.0]], dtype=np.float32)
    close = reference + np.float32(1e-4)  # within 1e-4 + 1e-5 x 10
    assert parity(reference, close) == {
        "images": 2,
        "max_abs_logit_diff": pytest.approx(1e-4, rel=0.01),  # float32 rounding at 10
        "tolerance": pytest.approx(2e-4),
        "top1_agree": 2,
        "ok": True,
    }
    off = reference.copy()
    off[1, 0] += 1e-3
    assert parity(reference, off)["ok"] is False and parity(reference, off)["top1_agree"] == 2
    flipped = reference.copy()
    flipped[1] = [0.0, 3.0, 1.0]  # a different class wins
    assert parity(reference, flipped, atol=10)["top1_agree"] == 1 and parity(reference, flipped, atol=10)["ok"] is False
