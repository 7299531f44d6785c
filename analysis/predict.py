"""Predict the class of new images with a sweep's model: one line per image, its file name, the label and
the softmax confidence.

    python -m analysis.predict photos/                        # the champion of the latest sweep
    python -m analysis.predict img.png --model models:/classify-digits@champion --top-k 3
    python -m analysis.predict photos/ --model 3f2a...e1 --json   # a trial's run id; machine-readable

The model comes from MLflow (see ``analysis.champion``): its best-epoch weights, its class names and the
exact eval transform it was validated and tested with (resize, centre crop, mean/std of its timm data
config), all stored with it by the sweep.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from mlflow.exceptions import MlflowException

from analysis.champion import Classifier, add_model_flags, check_images, find_images, load_classifier, open_rgb
from sweeps.tracking import TrackingUnavailable, check_tracking_store, use_tracking_uri

PROGRESS_EVERY = 1000  # images between progress lines on stderr


def predict(clf: Classifier, files, batch_size: int = 64, device: str = "cpu", top_k: int = 1, progress=None):
    """Yields, per image in order: (name, [(class name, probability), ...] best first, ``top_k`` long)."""
    transform, model = clf.transform(), clf.model.to(device)
    k = min(top_k, len(clf.classes))
    for start in range(0, len(files), batch_size):
        batch = files[start : start + batch_size]
        x = torch.stack([transform(open_rgb(path)) for _, path in batch]).to(device)
        with torch.inference_mode():
            probs, idx = model(x).float().softmax(1).topk(k, dim=1)
        for (name, _), p, i in zip(batch, probs.tolist(), idx.tolist(), strict=True):
            yield name, [(clf.classes[c], q) for c, q in zip(i, p, strict=True)]
        done = start + len(batch)
        if progress and (done // PROGRESS_EVERY) > (start // PROGRESS_EVERY):
            progress(f"{done} of {len(files)} images")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m analysis.predict",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files, or directories searched recursively")
    add_model_flags(p)
    p.add_argument("--top-k", type=int, default=1, metavar="K", help="the K most likely classes per image (default 1)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout: the model and every prediction")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    p.add_argument("--skip-bad-images", action="store_true", help="leave out unreadable files (named on stderr)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        return _fail(f"--top-k and --batch-size must be at least 1, got {args.top_k} and {args.batch_size}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        return _fail(f"--device {device}: torch {torch.__version__} sees no CUDA device")
    try:
        files = check_images(find_images(args.images, warn=_note), args.skip_bad_images, warn=_note)
        check_tracking_store(use_tracking_uri(args.tracking_uri)[0], reading=True)  # never made empty: only read
        clf = load_classifier(args.model)
    except (FileNotFoundError, ValueError, LookupError, MlflowException, TrackingUnavailable) as e:
        return _fail(str(e))
    if args.top_k > len(clf.classes):
        _note(f"--top-k {args.top_k}: the model has {len(clf.classes)} classes; each line shows all of them")
    _note(
        f"model: {clf.named}: {clf.arch}, {len(clf.classes)} classes, input "
        f"{clf.input_size} px ({clf.preprocessing['interpolation']}, crop_pct {clf.preprocessing['crop_pct']})"
    )
    results = predict(clf, files, args.batch_size, device, args.top_k, progress=_note)
    if args.json:
        doc = {
            "model": {"found_as": clf.found_as, "run_id": clf.run_id, "arch": clf.arch, "classes": clf.classes},
            "predictions": [
                {"file": name, "label": top[0][0], "confidence": top[0][1], "top_k": [list(t) for t in top]}
                for name, top in results
            ],
        }
        print(json.dumps(doc, indent=1))
        return 0
    width = max(len(name) for name, _ in files)
    for name, top in results:
        print(f"{name:<{width}}  " + "  ".join(f"{label} {p:.4f}" for label, p in top), flush=True)
    return 0


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
