"""Exports of a trained classifier: read back from their files, they give PyTorch's logits on real images."""

import json

import numpy as np
import pytest
import torch

from analysis.champion import Classifier
from analysis.export import ATOL, INPUT, META_FILE, PARITY_FILE, export, onnx_latency, onnx_session, to_onnx
from analysis.samples import choose
from trainables.augment import eval_config
from trainables.data import load_digits
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
        assert 0 <= r["max_abs_logit_diff"] <= ATOL
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
            assert np.abs(got - clf.model(x[:n]).numpy()).max() <= ATOL
    median, p90, repeats = onnx_latency(path, 32, threads=1)
    assert 0 < median <= p90 and repeats >= 30


def test_an_export_that_misses_parity_is_reported_as_missed(images, tmp_path):
    pictures, classes = images
    result = export(classifier("resnet18", classes), pictures, tmp_path, atol=0.0, progress=lambda _: None)
    exact = result["onnx"]["max_abs_logit_diff"] == 0.0
    assert result["onnx"]["ok"] is exact  # with no tolerance at all, any float difference is a miss
