"""Grad-CAM: where in an image a trained model looked for the class it predicted, on the sweep's sample
images, for each finished trial's best model. The heatmaps are computed by pytorch-grad-cam (jacobgil's
``grad-cam`` package); what is ours is the choice of target layer for each family:

- ResNet, EfficientNet, ConvNeXt: the deepest stage in timm's ``feature_info`` whose map is still at
  least ``MIN_SIDE`` cells across at the trained input size. The usual last stage has stride 32, a single
  cell at 32 px: its heatmap would upsample to a constant;
- ViT (and DeiT): the input of the last block's attention (``blocks[-1].norm1``), its patch tokens laid
  out on the patch grid. The last block's own output is useless here: the head reads only the class
  token there, so the patch tokens' gradients are zero.

Other families get no heatmap (``target_of`` says so). A map under ``MIN_SIDE`` cells across (a ViT's
2x2 grid at 32 px, the first ConvNet stage of a tiny input) is drawn, and its title says it is coarse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from trainables.augment import eval_transform  # noqa: E402
from trainables.data import ImageSamples  # noqa: E402
from trainables.evidence import GRADCAM_NPZ, GRADCAM_PNG, class_labels, plain  # noqa: E402
from trainables.models import family_of  # noqa: E402

MIN_SIDE = 4  # cells across the map Grad-CAM is computed on; fewer and the heatmap says almost nothing
COLUMNS = 8  # images per row of the figure
MAX_SAMPLES = 16  # enough to see what a model looks at, few enough to show every model's in the report


@dataclass(frozen=True)
class Sample:
    """One of the sweep's sample images: a fixed, class-balanced handful of validation images that every
    trial draws its Grad-CAM on and the sweep's run keeps (``analysis.samples``)."""

    file: str  # the PNG's name under the sweep run's samples/
    image: Image.Image  # RGB, as the trials loaded it
    label: int  # index into the sweep's classes


def choose(labels: np.ndarray, num_classes: int, n: int = MAX_SAMPLES) -> list[int]:
    """Up to ``n`` indices into a split: the first image of each class in split order, then the second
    of each, and so on, so every class is shown before any class twice."""
    by_class = [np.flatnonzero(np.asarray(labels) == c) for c in range(num_classes)]
    out: list[int] = []
    for rank in range(max((len(ix) for ix in by_class), default=0)):
        out += [int(ix[rank]) for ix in by_class if rank < len(ix)]
    return out[:n]


def sample_images(split: ImageSamples, classes: Sequence[str]) -> list[tuple[int, Sample]]:
    """The sweep's samples of ``split`` (its validation images), each with its index in the split: the
    same images wherever they are taken from the same split, in a trial or in the driver."""
    out = []
    for rank, i in enumerate(choose(split.labels, len(classes))):
        label = int(split.labels[i])
        name = f"{rank:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', classes[label])}.png"
        out.append((i, Sample(name, split.load(i), label)))
    return out


@dataclass(frozen=True)
class Target:
    layer: torch.nn.Module
    name: str  # where in the model, for the figure's title
    reshape: Callable[[torch.Tensor], torch.Tensor] | None  # tokens (N, L, C) -> maps (N, C, H, W)


def target_of(model: torch.nn.Module, arch: str, input_size: int) -> Target:
    """The layer Grad-CAM reads for this timm model; ValueError for a model it has no rule for."""
    if hasattr(model, "outside_torch"):
        raise ValueError(f"Grad-CAM does not apply to {arch}: {model.outside_torch}")
    if family_of(arch) == "vit":
        grid, prefix = tuple(model.patch_embed.grid_size), int(model.num_prefix_tokens)

        def tokens_to_map(t: torch.Tensor) -> torch.Tensor:
            return t[:, prefix:, :].reshape(t.size(0), *grid, t.size(2)).permute(0, 3, 1, 2)

        coarse = ", coarse" if min(grid) < MIN_SIDE else ""
        return Target(model.blocks[-1].norm1, f"blocks[-1].norm1 ({grid[0]}x{grid[1]} patches{coarse})", tokens_to_map)
    stages = list(getattr(model, "feature_info", None) or [])
    if family_of(arch) == "other" or not stages:
        raise ValueError(f"Grad-CAM: no target-layer rule for {arch!r} (family {family_of(arch)!r})")
    fine = [s for s in stages if input_size // s["reduction"] >= MIN_SIDE] or stages[:1]
    stage = fine[-1]
    side = max(1, input_size // stage["reduction"])
    coarse = ", coarse" if side < MIN_SIDE else ""
    return Target(model.get_submodule(stage["module"]), f"{stage['module']} ({side}x{side} map{coarse})", None)


@dataclass(frozen=True)
class Heatmaps:
    maps: np.ndarray  # (N, H, W) float32 in [0, 1], at the model's input size
    inputs: np.ndarray  # (N, H, W, 3) float32 in [0, 1]: each image as the model saw it (after the eval transform)
    predicted: np.ndarray  # (N,) class index the heatmap explains
    confidence: np.ndarray  # (N,) softmax probability of that class
    target: str


def gradcam(model: torch.nn.Module, arch: str, preprocessing: dict, samples: Sequence[Sample]) -> Heatmaps:
    """Heatmaps of the predicted class for each sample, through the model's own eval transform."""
    transform = eval_transform(preprocessing)
    x = torch.stack([transform(s.image) for s in samples])
    model.eval()
    target = target_of(model, arch, x.shape[-1])
    on = x.to(next(model.parameters()).device)  # the trial's device: its GPU when it has one
    with torch.inference_mode():
        probs = model(on).softmax(1).cpu()
    confidence, predicted = probs.max(1)
    with (
        torch.enable_grad(),
        GradCAM(model=model, target_layers=[target.layer], reshape_transform=target.reshape) as cam,
    ):
        maps = cam(input_tensor=on, targets=[ClassifierOutputTarget(int(c)) for c in predicted])
    model.zero_grad(set_to_none=True)  # the backward pass left gradients on the weights: not part of the model
    mean = torch.tensor(preprocessing["mean"]).view(3, 1, 1)
    std = torch.tensor(preprocessing["std"]).view(3, 1, 1)
    seen = (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return Heatmaps(
        maps.astype(np.float32), seen.astype(np.float32), predicted.numpy(), confidence.numpy(), target.name
    )


def write_gradcam(h: Heatmaps, samples: Sequence[Sample], classes: Sequence[str], out: Path, title: str) -> list[Path]:
    """The overlays as one figure (GRADCAM_PNG) and the raw heatmaps (GRADCAM_NPZ), into ``out`` (and
    evidence.CLASS_NAMES_CSV where the figure shows some classes by index)."""
    n = len(samples)
    cols = min(COLUMNS, n)
    rows = -(-n // cols)
    names = class_labels(classes, title)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.4 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, s) in enumerate(zip(axes.flat, samples, strict=False)):
        ax.imshow(show_cam_on_image(h.inputs[i], h.maps[i], use_rgb=True, image_weight=0.55))
        right = int(h.predicted[i]) == s.label
        ax.set_title(
            f"true {names.labels[s.label]}\npred {names.labels[int(h.predicted[i])]} {h.confidence[i]:.2f}",
            fontsize=8,
            fontfamily=names.families,
            color="black" if right else "C3",
        )
    what = f"Grad-CAM of the predicted class at {h.target}; red: misclassified"
    fig.suptitle(f"{plain(title)}\n{what}{names.note}", fontsize=9, fontfamily=names.families, wrap=True)
    fig.tight_layout()
    png = out / GRADCAM_PNG
    fig.savefig(png, dpi=100)
    plt.close(fig)
    npz = out / GRADCAM_NPZ
    np.savez_compressed(
        npz,
        maps=h.maps.astype(np.float16),
        files=np.array([s.file for s in samples]),
        true=np.array([s.label for s in samples]),
        predicted=h.predicted,
        confidence=h.confidence,
        target=np.array(h.target),
    )
    return [png, npz, *names.write(out)]
