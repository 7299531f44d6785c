"""Grad-CAM on the sweep's sample images: the layer each family is read at, and heatmaps that have the
model's input size and say something (not a constant)."""

import numpy as np
import pytest
import torch

from trainables.augment import eval_config
from trainables.config import TrialConfig
from trainables.data import limit_train, load_digits
from trainables.engine import fit
from trainables.gradcam import MIN_SIDE, Sample, choose, gradcam, target_of, write_gradcam
from trainables.models import build_model, data_config


@pytest.mark.parametrize(
    "arch, size, layer",
    [
        ("resnet18", 224, "layer4 (7x7 map)"),  # the usual last stage where it is big enough
        ("resnet18", 32, "layer2 (4x4 map)"),  # at 32 px the last stage is one cell: two stages earlier
        ("efficientnet_b0", 64, "blocks.4 (4x4 map)"),
        ("convnext_atto", 32, "stages.1 (4x4 map)"),
        ("vit_tiny_patch16_224", 64, "blocks[-1].norm1 (4x4 patches)"),  # where patch tokens still matter
    ],
)
def test_each_family_is_read_at_the_deepest_layer_with_a_map_worth_drawing(arch, size, layer):
    target = target_of(build_model(arch, 10, size), arch, size)
    assert target.name == layer
    assert MIN_SIDE == 4


def test_a_model_without_a_rule_is_refused_by_name():
    with pytest.raises(ValueError, match="no target-layer rule for 'mobilenetv3_small_050'"):
        target_of(build_model("mobilenetv3_small_050", 10, 64), "mobilenetv3_small_050", 64)


@pytest.fixture(scope="module")
def digits():
    return limit_train(load_digits(), 200, seed=0)


# ResNet at the default sweep's 32 px (its map two stages before the last); ViT at 64 px, where the patch
# grid is 4x4 (at 32 px it is 2x2, and a heatmap of 4 cells can come out flat).
@pytest.mark.parametrize("arch, size", [("resnet18", 32), ("vit_tiny_patch16_224", 64)])
def test_heatmaps_of_a_trained_model_have_its_input_size_and_are_not_constant(digits, arch, size, tmp_path):
    cfg = TrialConfig(arch=arch, img_size=size, max_epochs=2, batch_size=32, lr=3e-3, augment="none", warmup_epochs=0.5)
    *_, last = fit(cfg, digits, torch.device("cpu"))
    model = build_model(arch, 10, size)
    model.load_state_dict(last.state["best"]["model"])
    # what the trial stored: the model's preprocessing, cropped at the training policy's scale
    assert last.state["preprocessing"] == eval_config({**data_config(model, size), "crop_pct": cfg.eval_crop_pct})
    idx = choose(digits.val.labels, 10)
    samples = [Sample(f"{i}.png", digits.val.load(i), int(digits.val.labels[i])) for i in idx]
    heat = gradcam(model, arch, last.state["preprocessing"], samples)
    assert heat.maps.shape == (len(samples), size, size) and heat.inputs.shape == (len(samples), size, size, 3)
    assert np.isfinite(heat.maps).all() and heat.maps.min() >= 0 and heat.maps.max() <= 1
    spread = heat.maps.reshape(len(samples), -1).std(axis=1)
    assert (spread > 0.05).mean() >= 0.8, spread  # a heatmap that varies over the image, for most images
    assert all(p.grad is None for p in model.parameters())  # nothing of the backward pass left on the model
    png, npz = write_gradcam(heat, samples, digits.classes, tmp_path, arch)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = np.load(npz)
    assert saved["maps"].shape == heat.maps.shape and list(saved["true"]) == [s.label for s in samples]


def test_the_heatmap_figure_names_classes_in_any_script_and_shows_by_index_those_no_font_has(tmp_path, monkeypatch):
    import warnings

    import pandas as pd
    from matplotlib import font_manager
    from PIL import Image

    from trainables.evidence import CLASS_NAMES_CSV, _charmap
    from trainables.gradcam import Heatmaps

    cat = "\u732b"  # Chinese: as if no installed font had it
    fonts = [e for e in font_manager.fontManager.ttflist if ord(cat) not in _charmap(e.fname, getattr(e, "index", 0))]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", fonts)
    classes = ["\u043a\u043e\u0448\u043a\u0430", cat]  # Cyrillic: DejaVu Sans has it
    rng = np.random.default_rng(0)
    samples = [Sample(f"{i}.png", Image.new("RGB", (8, 8)), i % 2) for i in range(4)]
    heat = Heatmaps(
        rng.random((4, 16, 16), dtype=np.float32),
        rng.random((4, 16, 16, 3), dtype=np.float32),
        np.array([0, 1, 1, 0]),
        np.full(4, 0.9),
        "layer2 (4x4 map)",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png, npz, names = write_gradcam(heat, samples, classes, tmp_path, "resnet18")
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "missing from font" in m], said
    assert any("no installed font has the characters" in m and "1: " in m for m in said), said
    assert names.name == CLASS_NAMES_CSV and pd.read_csv(names)["name"].tolist() == classes
