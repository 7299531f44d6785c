"""The sweep's sample images: a fixed, class-balanced handful of validation images, chosen once per sweep
and kept as PNG files on its parent MLflow run (``samples/``), with ``index.json`` saying which image of
the split each one is. Every finished trial's Grad-CAM heatmaps are drawn on them, and the ONNX export is
checked against PyTorch on them: the same real images for every model, and a user can open them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
from PIL import Image

from trainables.contracts import SAMPLES_DIR
from trainables.data import ImageSamples, to_rgb
from trainables.gradcam import Sample, sample_images

INDEX_FILE = "index.json"


def write_samples(split: ImageSamples, classes: list[str], out: Path) -> list[dict]:
    """The chosen images of ``split`` as PNG files in ``out`` (lossless: the pixels the trials saw), and
    their index. Returns the index entries."""
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for i, sample in sample_images(split, classes):
        sample.image.save(out / sample.file)
        source = split.images[i] if isinstance(split.images, list) else f"in-memory image {i} of the split"
        index.append(
            {
                "file": sample.file,
                "label": sample.label,
                "class": classes[sample.label],
                "split_index": i,
                "source": str(source),
            }
        )
    (out / INDEX_FILE).write_text(json.dumps(index, indent=1))
    return index


def log_samples(split: ImageSamples, classes: list[str]) -> int:
    """``write_samples`` into the active MLflow run's ``samples/``; the number of images."""
    with tempfile.TemporaryDirectory() as d:
        index = write_samples(split, classes, Path(d))
        mlflow.log_artifacts(d, SAMPLES_DIR)
    return len(index)


def read_samples(client: mlflow.MlflowClient, run_id: str) -> list[Sample] | None:
    """The samples a sweep's parent run holds; None when it has none (a sweep of an older version). A
    store that cannot be reached raises, as any other MLflow read would."""
    if f"{SAMPLES_DIR}/{INDEX_FILE}" not in {a.path for a in client.list_artifacts(run_id, SAMPLES_DIR)}:
        return None
    with tempfile.TemporaryDirectory() as d:
        local = Path(client.download_artifacts(run_id, SAMPLES_DIR, d))
        index = json.loads((local / INDEX_FILE).read_text())
        return [Sample(e["file"], _open(local / e["file"]), int(e["label"])) for e in index]


def _open(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return to_rgb(im)
