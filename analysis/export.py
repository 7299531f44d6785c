"""Export a sweep's classifier for serving without this project: ONNX (for ONNX Runtime and most serving
stacks) and TorchScript, each read back from its file and checked against the PyTorch model on real
images: the largest difference in logits (within atol + rtol x the largest logit), and whether every image
gets the same top-1 class.

    python -m analysis.export                                  # the champion of the latest sweep
    python -m analysis.export --model models:/classify-digits@champion --out exports/digits
    python -m analysis.export --images more_photos/            # check parity on these images too

Written to --out (default exports/<arch>-<run id>/): model.onnx, model.torchscript.pt, preprocessing.json
(class names and the eval transform the inputs must go through) and parity.json; logged to the trial's
MLflow run under export/ (unless --no-log). The parity images are the sweep's validation samples (its
parent run's samples/), plus any given with --images. Exit status 1 if an export misses parity.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from analysis.champion import Classifier, add_model_flags, check_images, find_images, load_classifier, open_rgb
from analysis.samples import read_samples
from sweeps.tracking import TrackingUnavailable, check_tracking_store, use_tracking_uri
from trainables.contracts import EXPORT_DIR, SAMPLES_DIR
from trainables.latency import LATENCY_MIN_REPEATS, LATENCY_MIN_SECONDS, LATENCY_WARMUP, latency_stats, repeat_timed

ONNX_FILE, TORCHSCRIPT_FILE = "model.onnx", "model.torchscript.pt"
META_FILE, PARITY_FILE = "preprocessing.json", "parity.json"
OPSET = 18  # ONNX opset of the exports: written by both of torch 2.14's exporters, run by ONNX Runtime >= 1.14
# Largest |logit difference| from PyTorch an export may show: ATOL + RTOL x the largest |logit| (float32
# rounding grows with the logits' size; a trained model's are tens, an untrained one's below one).
ATOL, RTOL = 1e-4, 1e-5
INPUT, OUTPUT = "images", "logits"  # the exported graphs' input and output names


def to_onnx(model: torch.nn.Module, input_size: int, path: Path, dynamo: bool = False) -> Path:
    """The model as an ONNX graph, by timm's own exporter (``timm.utils.onnx.onnx_export``, which also runs
    ONNX's checker on it): input ``images`` float32 (batch, 3, size, size), normalised as its preprocessing
    says; output ``logits`` (batch, classes); any batch size. Like timm, torch's TorchScript-based exporter
    by default: torch 2.14 deprecates it for the torch.export-based one (``dynamo``), which took 9-14x as
    long here (resnet18 5.5 s against 0.6 s, efficientnet_b0 14 s against 1.0 s, 2 cores) and gives the
    same logits (tests/analysis/test_export.py checks both)."""
    from timm.utils.onnx import onnx_export

    x = torch.zeros(2, 3, input_size, input_size)
    with warnings.catch_warnings():  # the exporters' deprecation and tracer notes: not actionable here
        warnings.simplefilter("ignore")
        onnx_export(
            model.eval(),
            str(path),
            example_input=x,
            opset=OPSET,
            use_dynamo=dynamo,
            input_names=[INPUT],
            output_names=[OUTPUT],
        )
    return path


def onnx_session(path: Path, threads: int):
    """An ONNX Runtime CPU session using ``threads`` cores for each operator (as torch does)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_latency(
    path: Path, input_size: int, threads: int, min_seconds: float = LATENCY_MIN_SECONDS
) -> tuple[float, float, int]:
    """(median ms, p90 ms, repeats) of batch-1 ONNX Runtime inference, timed as PyTorch's is
    (``trainables.latency``: same warm-up, repeats and minimum time)."""
    session = onnx_session(path, threads)
    x = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size), dtype=np.float32)
    times = repeat_timed(lambda: session.run(None, {INPUT: x}), LATENCY_WARMUP, LATENCY_MIN_REPEATS, min_seconds)
    return latency_stats(times)


def parity(reference: np.ndarray, got: np.ndarray, atol: float = ATOL, rtol: float = RTOL) -> dict:
    """How an export's logits compare with PyTorch's on the same images: within tolerance, and the same
    top-1 class for every image."""
    diff = float(np.abs(reference - got).max())
    tolerance = atol + rtol * float(np.abs(reference).max())
    agree = int((reference.argmax(1) == got.argmax(1)).sum())
    n = len(reference)
    ok = diff <= tolerance and agree == n
    return {"images": n, "max_abs_logit_diff": diff, "tolerance": tolerance, "top1_agree": agree, "ok": ok}


def export(
    clf: Classifier,
    images: list,
    out: Path,
    atol: float = ATOL,
    rtol: float = RTOL,
    dynamo: bool = False,
    progress=print,
) -> dict:
    """Write both exports and their parity into ``out``; returns what parity.json holds. An ONNX export
    that fails raises ``ExportError``; a TorchScript one that fails is recorded and ONNX still stands."""
    out.mkdir(parents=True, exist_ok=True)
    transform = clf.transform()
    x = torch.stack([transform(img) for _, img in images])
    with torch.inference_mode():
        reference = clf.model(x).numpy()
    results: dict = {"atol": atol, "rtol": rtol, "parity_images": [name for name, _ in images]}

    exporter = "torch.export-based" if dynamo else "TorchScript-based"
    progress(f"exporting {clf.arch} to ONNX (opset {OPSET}, torch.onnx's {exporter} exporter)")
    try:
        to_onnx(clf.model, clf.input_size, out / ONNX_FILE, dynamo)
        got = onnx_session(out / ONNX_FILE, torch.get_num_threads()).run(None, {INPUT: x.numpy()})[0]
    except Exception as e:  # noqa: BLE001 - any exporter or runtime failure, named with the model
        other = "without --dynamo" if dynamo else "with --dynamo"
        raise ExportError(
            f"{clf.arch} (run {clf.run_id}) could not be exported to ONNX and run by ONNX Runtime with torch.onnx's "
            f"{exporter} exporter: {type(e).__name__}: {str(e)[:500]}. Try {other}."
        ) from e
    results["onnx"] = {
        "file": ONNX_FILE,
        "exporter": exporter,
        "onnxruntime": _version("onnxruntime"),
        **parity(reference, got, atol, rtol),
    }

    progress(f"exporting {clf.arch} to TorchScript (torch.jit.trace)")
    try:
        with warnings.catch_warnings():  # torch 2.14 deprecates TorchScript (for torch.export): still loads
            warnings.simplefilter("ignore")
            torch.jit.trace(clf.model, x[:1]).save(str(out / TORCHSCRIPT_FILE))
            traced = torch.jit.load(str(out / TORCHSCRIPT_FILE)).eval()
        with torch.inference_mode():
            got = traced(x).numpy()
        results["torchscript"] = {"file": TORCHSCRIPT_FILE, **parity(reference, got, atol, rtol)}
    except Exception as e:  # noqa: BLE001 - tracing fails on some architectures: said, and ONNX still stands
        results["torchscript"] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}

    meta = {
        "arch": clf.arch,
        "run_id": clf.run_id,
        "model": clf.found_as,
        "classes": clf.classes,
        "preprocessing": clf.preprocessing,
        "input": f"{INPUT}: float32 (batch, 3, {clf.input_size}, {clf.input_size}), RGB, after the preprocessing",
        "output": f"{OUTPUT}: float32 (batch, {len(clf.classes)}); softmax for probabilities",
        "torch": torch.__version__,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    (out / PARITY_FILE).write_text(json.dumps(results, indent=1))
    return results


class ExportError(RuntimeError):
    pass


def parity_images(clf: Classifier, extra: list[str] | None, client: mlflow.MlflowClient, skip_bad: bool) -> list:
    """The sweep's samples (from the trial's parent run) and the images given; at least one."""
    images = []
    parent = client.get_run(clf.run_id).data.tags.get(MLFLOW_PARENT_RUN_ID)
    samples = read_samples(client, parent) if parent else None
    if samples:
        images += [(f"{SAMPLES_DIR}/{s.file}", s.image) for s in samples]
    if extra:
        files = check_images(find_images(extra, warn=_note), skip_bad, warn=_note)
        images += [(name, open_rgb(path)) for name, path in files]
    if not images:
        raise LookupError(
            f"run {clf.run_id}: its sweep has no sample images (an earlier version of cvsweep): give "
            "--images with some real images to check the exports on"
        )
    return images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m analysis.export",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_flags(p)
    p.add_argument("--out", type=Path, help="output directory (default: exports/<arch>-<run id>)")
    p.add_argument("--images", nargs="+", metavar="IMAGE_OR_DIR", help="more images to check parity on")
    p.add_argument(
        "--atol", type=float, default=ATOL, help="|logit difference| accepted: atol + rtol x max |logit| (%(default)g)"
    )
    p.add_argument("--rtol", type=float, default=RTOL, help="see --atol (default %(default)g)")
    p.add_argument(
        "--dynamo",
        action="store_true",
        help="ONNX by torch's torch.export-based exporter (its default since torch 2.9; about 10x slower) instead "
        "of the TorchScript-based one timm uses",
    )
    p.add_argument("--skip-bad-images", action="store_true", help="leave out unreadable --images files")
    p.add_argument("--no-log", action="store_true", help="do not log the exported files to the trial's MLflow run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_tracking_store(use_tracking_uri(args.tracking_uri)[0], reading=True)  # never made empty: only read
    except TrackingUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    client = mlflow.MlflowClient()
    try:
        clf = load_classifier(args.model, client)
        if hasattr(clf.model, "outside_torch"):
            raise ValueError(
                f"{clf.arch} (run {clf.run_id}) cannot be exported to ONNX or TorchScript: {clf.model.outside_torch}. "
                "Serve it with python -m analysis.predict, or mlflow.pytorch.load_model on its run's model."
            )
        images = parity_images(clf, args.images, client, args.skip_bad_images)
    except (FileNotFoundError, ValueError, LookupError, MlflowException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or Path("exports") / f"{clf.arch}-{clf.run_id[:8]}"
    _note(f"model: {clf.named}: {clf.arch}, input {clf.input_size} px")
    try:
        results = export(clf, images, out, args.atol, args.rtol, args.dynamo, progress=_note)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for kind in ("onnx", "torchscript"):
        r = results[kind]
        if "error" in r:
            print(f"{kind}: not exported: {r['error']}")
            continue
        verdict = "ok" if r["ok"] else f"MISSED (tolerance {r['tolerance']:.1e})"
        print(
            f"{kind}: {out / r['file']}: max |logit difference| {r['max_abs_logit_diff']:.2e}, top-1 agrees on "
            f"{r['top1_agree']} of {r['images']} images: {verdict}"
        )
    print(f"preprocessing: {out / META_FILE}")
    if not args.no_log:  # the files written here, not whatever else --out holds
        for name in (ONNX_FILE, TORCHSCRIPT_FILE, META_FILE, PARITY_FILE):
            if (out / name).is_file() and (name != TORCHSCRIPT_FILE or "error" not in results["torchscript"]):
                client.log_artifact(clf.run_id, str(out / name), EXPORT_DIR)
        print(f"logged to run {clf.run_id} under {EXPORT_DIR}/")
    traced = results["torchscript"]
    return 0 if results["onnx"]["ok"] and ("error" in traced or traced["ok"]) else 1


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
