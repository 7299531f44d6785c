"""Recipe parity (issue 21): the product's trial against a bare PyTorch loop at the same user settings.

For each architecture and seed, two trainings on the same split from the same initial weights:

- product: `trainables.engine.fit`, the loop every sweep trial runs (no Ray, no MLflow), with the
  user-level settings below and every other `TrialConfig` field at its default (as resolved by the
  trial code in this checkout, whose hash each run records), unless `--set` or an ablation changes it;
- bare: `timm.create_model` (random weights or `--weights`), resize straight to the input size +
  normalise for every split, `CrossEntropyLoss`, `AdamW` at the same lr (weight decay
  `--bare-weight-decay`), no schedule, no clipping, no label smoothing.

User-level settings (both loops): full fine-tuning, no augmentation, `--lr`, `--batch-size`,
`--epochs`, `--img-size`, nothing stopped early. Both report the test accuracy of the epoch with the
best validation accuracy (the product's rule); the bare loop's last epoch is kept in the JSON too.
The bare loop seeds each epoch's data order as the product does, so with every default turned to the
bare loop's value (condition `all`) the two loops should agree to rounding: the harness's own check.

`--set eval_crop_pct=model` sets each model's own timm crop_pct (0.875-0.95 for the tiny preset): the
eval transform the product used before `eval_crop_pct` followed the training policy. With
`--set backbone_lr_mult=0.1` as well, that is the product's recipe as issue 21 measured it.

Ablations (`--ablate`) change what no `TrialConfig` field reaches. They are local monkeypatches of
`trainables.engine` inside this benchmark only, and each result names them:

  constant_lr      no warm-up and no cosine decay: the learning rate stays at lr (x backbone_lr_mult)
  bare_interp      the bare loop's interpolation (`--bare-interp`) in the product's transforms
  bare_norm        the bare loop's mean/std (`--bare-norm`) in the product's transforms
  keep_last_batch  the last, partial training batch is kept (the product drops it)
  zero_head        the new classifier starts at zero (a candidate fix for models whose random-init logits
                   start large, measured and not taken: it costs ViT and ConvNeXt)

`--matrix single` runs the baseline, each default alone turned to the bare loop's value, and all of
them together; `--matrix loo` all of them but one, for each. The bare loop runs once per seed and
serves every condition.

    python benchmarks/recipe_parity.py --smoke-test                          # ~1 min
    python benchmarks/recipe_parity.py --archs efficientnet_b0 --matrix single --json /tmp/rp.json
    python benchmarks/recipe_parity.py --set backbone_lr_mult=0.1 --set eval_crop_pct=model   # the old recipe
    python benchmarks/recipe_parity.py --make-shapes /tmp/shapes_cls         # a second image folder, then
    python benchmarks/recipe_parity.py --data /tmp/shapes_cls
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TINY = ("resnet18", "efficientnet_b0", "vit_tiny_patch16_224", "convnext_atto")
ABLATIONS = ("constant_lr", "bare_interp", "bare_norm", "keep_last_batch", "zero_head")
SHAPE_MARGIN = 0.2  # context around each shape's box in the classification crops, as a share of its side


# ---------------------------------------------------------------------------------------------- conditions


def levers(bare_wd: float) -> dict[str, tuple[dict, tuple[str, ...]]]:
    """Each product default that the bare loop lacks, as (TrialConfig overrides, ablations) that turn it
    to the bare loop's value."""
    return {
        "backbone_lr_mult=1": ({"backbone_lr_mult": 1.0}, ()),
        "eval_crop_pct=1": ({"eval_crop_pct": 1.0}, ()),
        "head_init=model": ({"head_init_std": None}, ()),
        "no_schedule": ({"warmup_epochs": 0.0}, ("constant_lr",)),
        "label_smoothing=0": ({"label_smoothing": 0.0}, ()),
        f"weight_decay={bare_wd:g}": ({"weight_decay": bare_wd}, ()),
        "grad_clip=0": ({"grad_clip": 0.0}, ()),
        "preproc=bare": ({}, ("bare_interp", "bare_norm")),
        "keep_last_batch": ({}, ("keep_last_batch",)),
    }


def _merge(parts) -> tuple[dict, tuple[str, ...]]:
    sets, ablates = {}, []
    for s, a in parts:
        sets.update(s)
        ablates += [x for x in a if x not in ablates]
    return sets, tuple(ablates)


def conditions(a: argparse.Namespace) -> dict[str, tuple[dict, tuple[str, ...]]]:
    """Condition name -> (TrialConfig overrides, ablations), in the order they run."""
    lv = levers(a.bare_weight_decay)
    out: dict[str, tuple[dict, tuple[str, ...]]] = {}
    if a.matrix == "single":
        out["baseline"] = ({}, ())
        out.update(lv)
        out["warmup_epochs=0"] = ({"warmup_epochs": 0.0}, ())  # the route the product allows: cosine stays
        out["all"] = _merge(lv.values())
    elif a.matrix == "loo":
        for name in lv:
            out[f"all-but:{name}"] = _merge(v for k, v in lv.items() if k != name)
    if a.set or a.ablate or not out:
        sets = dict(parse_set(s) for s in a.set or [])
        ablates = tuple(a.ablate or ())
        label = " ".join([f"{k}={v}" for k, v in sets.items()] + [f"ablate:{x}" for x in ablates]) or "baseline"
        out[label] = (sets, ablates)
    return out


def parse_set(item: str) -> tuple[str, object]:
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"--set {item}: expected KEY=VALUE, e.g. --set backbone_lr_mult=1.0")
    return key.strip(), yaml.safe_load(value)


# ------------------------------------------------------------------------------------------------ the runs


class ConstantLR:
    """Stands in for timm's CosineLRScheduler under the constant_lr ablation: every group keeps its lr."""

    def __init__(self, optimizer, **_) -> None:
        self.optimizer = optimizer

    def step_update(self, num_updates: int, metric=None) -> None:
        pass


@contextlib.contextmanager
def ablated(names: tuple[str, ...], a: argparse.Namespace):
    """The product's engine with the named ablations patched in (this benchmark only)."""
    from unittest import mock

    import torch

    import trainables.engine as engine

    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise SystemExit(f"--ablate {unknown[0]}: unknown; choose from {', '.join(ABLATIONS)}")
    data_config, data_loader, build_model = engine.data_config, engine.DataLoader, engine.build_model

    def patched_data_config(model, img_size):
        dc = dict(data_config(model, img_size))
        if "bare_interp" in names:
            dc["interpolation"] = a.bare_interp
        if "bare_norm" in names:
            dc["mean"], dc["std"] = bare_mean_std(a.bare_norm, data_config(model, img_size))
        return dc

    def patched_loader(*args, **kw):
        return data_loader(*args, **{**kw, "drop_last": False})

    def zero_head_model(*args, **kw):
        model = build_model(*args, **kw)
        for p in model.get_classifier().parameters():
            torch.nn.init.zeros_(p)
        return model

    with contextlib.ExitStack() as stack:
        if "zero_head" in names:
            stack.enter_context(mock.patch.object(engine, "init_head", lambda model, std: None))
            stack.enter_context(mock.patch.object(engine, "build_model", zero_head_model))
        if {"bare_interp", "bare_norm"} & set(names):
            stack.enter_context(mock.patch.object(engine, "data_config", patched_data_config))
        if "constant_lr" in names:
            stack.enter_context(mock.patch.object(engine, "CosineLRScheduler", ConstantLR))
        if "keep_last_batch" in names:
            stack.enter_context(mock.patch.object(engine, "DataLoader", patched_loader))
        yield


def bare_mean_std(norm: str, model_dc: dict) -> tuple[tuple, tuple]:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    if norm == "imagenet":
        return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)
    return tuple(model_dc["mean"]), tuple(model_dc["std"])


def user_config(a: argparse.Namespace, arch: str, seed: int) -> dict:
    """The user-level settings, as TrialConfig fields; everything else stays the product's default."""
    return dict(
        arch=arch, weights=a.weights, img_size=a.img_size, freeze="full", augment="none", lr=a.lr,
        batch_size=a.batch_size, max_epochs=a.epochs, seed=seed, num_workers=0,
    )  # fmt: skip


def run_product(a, arch: str, seed: int, splits, sets: dict, ablates: tuple[str, ...]) -> dict:
    import torch

    from trainables import metrics as M
    from trainables.config import TrialConfig
    from trainables.engine import fit

    if sets.get("eval_crop_pct") == "model":  # the model's own timm crop, per architecture
        import timm

        sets = {**sets, "eval_crop_pct": timm.get_pretrained_cfg(arch).crop_pct}
    cfg = TrialConfig.from_dict({**user_config(a, arch, seed), **sets})
    with ablated(ablates, a):
        reports = [r.metrics for r in fit(cfg, splits, torch.device(a.device))]
    last = reports[-1]
    return {
        "val_acc": last[M.BEST_VAL_ACC],
        "test_acc": last[M.TEST_ACC],
        "best_epoch": last[M.BEST_EPOCH],
        "val_curve": [r[M.VAL_ACC] for r in reports],
        "train_loss_curve": [r[M.TRAIN_LOSS] for r in reports],
        "config": cfg.to_dict(),
    }


def bare_model(arch: str, num_classes: int, img_size: int, weights: str):
    import timm

    kw = {"num_classes": num_classes}
    if timm.get_pretrained_cfg(arch).fixed_input_size:  # ViTs: position embeddings for this size
        kw["img_size"] = img_size
    if weights == "none":
        return timm.create_model(arch, pretrained=False, **kw)
    return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": weights}, **kw)


def _accuracy(model, loader, device) -> float:
    import torch

    model.eval()
    right = total = 0
    with torch.inference_mode():
        for x, y in loader:
            right += int((model(x.to(device)).argmax(1).cpu() == y).sum())
            total += len(y)
    return right / total


def run_bare(a, arch: str, seed: int, splits) -> dict:
    """The loop a user writes. Each epoch's data order is seeded as the product's (seed, epoch) is, so
    that with every product default neutralised the two loops see the same batches."""
    import torch
    from timm.data import resolve_model_data_config
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    from trainables.data import ImageSamplesDataset

    device = torch.device(a.device)
    torch.manual_seed(seed)
    model = bare_model(arch, splits.num_classes, a.img_size, a.weights).to(device)
    mean, std = bare_mean_std(a.bare_norm, resolve_model_data_config(model))
    interp = T.InterpolationMode(a.bare_interp)
    tf = T.Compose([T.Resize((a.img_size, a.img_size), interpolation=interp), T.ToTensor(), T.Normalize(mean, std)])
    loader = lambda s, shuffle: DataLoader(ImageSamplesDataset(s, tf), a.batch_size, shuffle=shuffle)  # noqa: E731
    train, val, test = loader(splits.train, True), loader(splits.val, False), loader(splits.test, False)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.bare_weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    vals, tests, losses = [], [], []
    for epoch in range(1, a.epochs + 1):
        torch.manual_seed(seed * 100_003 + epoch)  # the product's per-epoch seed (engine._seed_epoch)
        model.train()
        loss_sum = seen = 0
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum, seen = loss_sum + loss.item() * len(y), seen + len(y)
        losses.append(loss_sum / seen)
        vals.append(_accuracy(model, val, device))
        tests.append(_accuracy(model, test, device))
    best = max(range(len(vals)), key=lambda i: (vals[i], -i))  # first epoch of the best: the product's rule
    return {
        "val_acc": vals[best],
        "test_acc": tests[best],
        "best_epoch": best + 1,
        "last_val_acc": vals[-1],
        "last_test_acc": tests[-1],
        "val_curve": vals,
        "test_curve": tests,
        "train_loss_curve": losses,
    }


# ----------------------------------------------------------------------------------------------- reporting


def spread(xs: list[float]) -> dict:
    return {
        "mean": statistics.mean(xs),
        "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
        "min": min(xs),
        "max": max(xs),
        "n": len(xs),
    }


def summarise(runs: list[dict], key_of) -> list[dict]:
    """Per architecture and condition: product and bare spread of val/test accuracy, and the difference
    (product - bare) of the means, with its spread over the paired seeds."""
    rows = []
    for arch in dict.fromkeys(r["arch"] for r in runs):
        bare = {r["seed"]: r for r in runs if r["arch"] == arch and r["kind"] == "bare" and key_of(r)}
        for cond in dict.fromkeys(r["condition"] for r in runs if r["arch"] == arch and r["kind"] == "product"):
            prod = {r["seed"]: r for r in runs if r["arch"] == arch and r["condition"] == cond and key_of(r)}
            seeds = sorted(set(prod) & set(bare))
            if not seeds:
                continue
            row = {"arch": arch, "condition": cond, "seeds": seeds}
            for split in ("val_acc", "test_acc"):
                p = [100 * prod[s][split] for s in seeds]
                b = [100 * bare[s][split] for s in seeds]
                row[split] = {
                    "product": spread(p),
                    "bare": spread(b),
                    "diff": spread([x - y for x, y in zip(p, b, strict=True)]),
                }
            row["product_wall_s"] = statistics.mean(prod[s]["wall_s"] for s in seeds)
            rows.append(row)
    return rows


def _ms(s: dict) -> str:
    return f"{s['mean']:5.1f} ± {s['std']:4.1f} [{s['min']:.1f}-{s['max']:.1f}]"


def print_table(rows: list[dict]) -> None:
    print("\n| architecture | condition | product val | bare val | product test | bare test | diff val | diff test |")
    print("|:--|:--|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        v, t = r["val_acc"], r["test_acc"]
        print(
            f"| {r['arch']} | {r['condition']} | {_ms(v['product'])} | {_ms(v['bare'])} | {_ms(t['product'])} | "
            f"{_ms(t['bare'])} | {v['diff']['mean']:+5.1f} ± {v['diff']['std']:.1f} | "
            f"{t['diff']['mean']:+5.1f} ± {t['diff']['std']:.1f} |"
        )
    print("(accuracy %, mean ± std [min-max] over seeds; diff = product - bare, paired by seed)")


# --------------------------------------------------------------------------------------------- shapes data


def make_shapes(out: Path, images: int, seed: int) -> None:
    """A second, generated image folder: every shape of `images` canvases of trainables.shapes, cropped
    with SHAPE_MARGIN of context into out/<circle|square|triangle>/."""
    import numpy as np

    from trainables.shapes import CLASSES, ShapesSpec, draw_image

    spec = ShapesSpec(seed=seed)
    rng = np.random.default_rng(seed)
    for c in CLASSES:
        (out / c).mkdir(parents=True, exist_ok=True)
    count = 0
    for n in range(images):
        img, labels = draw_image(rng, spec)
        for k, (c, cx, cy, w, _h) in enumerate(labels):
            side = w * spec.size
            half = side * (0.5 + SHAPE_MARGIN)
            x, y = cx * spec.size, cy * spec.size
            box = [max(0, round(x - half)), max(0, round(y - half))]
            box += [min(spec.size, round(x + half)), min(spec.size, round(y + half))]
            img.crop(tuple(box)).save(out / CLASSES[c] / f"{n:05d}_{k}.png")
            count += 1
    print(f"wrote {count} crops of {images} canvases to {out} ({', '.join(CLASSES)})")


# -------------------------------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=list(TINY), help="timm model names (default: the tiny preset)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds: init, data order (default 0 1 2)")
    ap.add_argument("--data", default=None, help="an ImageFolder directory (root/<class>/<image>); default: digits")
    ap.add_argument("--weights", default="none", help="'none' (random init) or a local .safetensors/.pth file")
    ap.add_argument("--img-size", type=int, default=32, help="input size, pixels (default 32)")
    ap.add_argument("--batch-size", type=int, default=32, help="batch size of both loops (default 32)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs of both loops, none stopped early (default 4)")
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate of both loops (default 1e-3)")
    ap.add_argument(
        "--bare-weight-decay", type=float, default=0.01, help="the bare loop's AdamW weight decay (torch default 0.01)"
    )
    ap.add_argument(
        "--bare-interp", default="bilinear", choices=["bilinear", "bicubic", "nearest"],
        help="the bare loop's resize interpolation (default bilinear, torchvision's Resize default)",
    )  # fmt: skip
    ap.add_argument(
        "--bare-norm", default="imagenet", choices=["imagenet", "model"],
        help="the bare loop's mean/std: ImageNet's (default) or the model's timm data config",
    )  # fmt: skip
    ap.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="override a product TrialConfig field (YAML value), e.g. --set backbone_lr_mult=1.0; repeatable",
    )  # fmt: skip
    ap.add_argument("--ablate", action="append", choices=ABLATIONS, help="a benchmark-only monkeypatch (above)")
    ap.add_argument("--matrix", choices=["single", "loo"], help="run a set of conditions (above)")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare loop (e.g. when --reuse has it)")
    ap.add_argument("--device", default="cpu", help="torch device of both loops (default cpu)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1); loaders use no workers")
    ap.add_argument("--json", type=Path, help="write every run and the summary here, after each run")
    ap.add_argument("--reuse", action="store_true", help="keep the runs already in --json and skip those")
    ap.add_argument("--make-shapes", type=Path, metavar="DIR", help="write the generated shapes folder, then exit")
    ap.add_argument("--shapes-images", type=int, default=700, help="canvases for --make-shapes (default 700)")
    ap.add_argument("--smoke-test", action="store_true", help="resnet18, 1 seed, 2 epochs, 200 train images")
    a = ap.parse_args(argv)
    if a.smoke_test:
        a.archs, a.seeds, a.epochs = ["resnet18"], [0], 2
    return a


def settings_key(a: argparse.Namespace) -> dict:
    """What a run's numbers depend on besides its condition: --reuse keeps only runs that match it."""
    keys = ("data", "weights", "img_size", "batch_size", "epochs", "lr", "bare_weight_decay", "bare_interp")
    return {**{k: getattr(a, k) for k in (*keys, "bare_norm", "smoke_test")}, "trial_code": trial_code_hash()}


def same_settings(run: dict, settings: dict) -> bool:
    """The bare loop does not run the trial code (only the split, which is seeded and fixed), so its runs
    are reused across trial-code changes; the product's are not."""
    if run["kind"] == "bare":
        return {**run["settings"], "trial_code": None} == {**settings, "trial_code": None}
    return run["settings"] == settings


def trial_code_hash() -> str:
    """SHA-256 prefix of trainables/*.py: runs of other trial code (other defaults) are never mixed."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted((ROOT / "trainables").glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:12]


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.make_shapes:
        make_shapes(a.make_shapes, a.shapes_images, seed=0)
        return
    import timm
    import torch

    from trainables.data import limit_train, load_splits

    torch.set_num_threads(a.threads)
    conds = conditions(a)
    if a.smoke_test:
        conds = {"baseline": ({}, ()), "all": _merge(levers(a.bare_weight_decay).values())}
    splits = load_splits(a.data, 0.15, 0.15, 0)
    if a.smoke_test:
        splits = limit_train(splits, 200, seed=0)
    print(f"{platform.node()} | torch {torch.__version__} | timm {timm.__version__} | {a.threads} thread(s)")
    print(
        f"data {splits.name}: {len(splits.train)}/{len(splits.val)}/{len(splits.test)} images, {splits.num_classes} "
        f"classes | {a.img_size} px, batch {a.batch_size}, {a.epochs} epochs, lr {a.lr:g}, weights {a.weights}"
    )
    print(f"conditions: {', '.join(conds)} | seeds {a.seeds} | archs {', '.join(a.archs)}", flush=True)
    print(f"trial code (trainables/*.py) sha256 {trial_code_hash()}", flush=True)
    settings = settings_key(a)
    runs = json.loads(a.json.read_text())["runs"] if a.reuse and a.json and a.json.is_file() else []
    done = {(r["kind"], r["arch"], r["seed"], r["condition"]) for r in runs if same_settings(r, settings)}
    t_start = time.perf_counter()
    for arch in a.archs:
        for seed in a.seeds:
            todo = [] if a.no_bare else [("bare", "bare", {}, ())]
            todo += [("product", name, sets, abl) for name, (sets, abl) in conds.items()]
            for kind, name, sets, abl in todo:
                if (kind, arch, seed, name) in done:
                    continue
                t0 = time.perf_counter()
                run = run_bare if kind == "bare" else lambda *x: run_product(*x, sets, abl)  # noqa: B023
                out = run(a, arch, seed, splits)
                wall = time.perf_counter() - t0
                runs.append({
                    "kind": kind, "arch": arch, "seed": seed, "condition": name, "sets": sets,
                    "ablations": list(abl), "settings": settings, "wall_s": wall, **out,
                })  # fmt: skip
                curve = " ".join(f"{100 * v:.1f}" for v in out["val_curve"])
                print(
                    f"[{arch} seed {seed}] {kind:7s} {name:24s} val {100 * out['val_acc']:5.1f} test "
                    f"{100 * out['test_acc']:5.1f} (best epoch {out['best_epoch']}; val by epoch {curve}) {wall:.0f} s",
                    flush=True,
                )
                if a.json:
                    write_json(a.json, runs, settings)
    rows = summarise(runs, lambda r: same_settings(r, settings))
    print_table([r for r in rows if r["condition"] in conds and r["arch"] in a.archs])
    print(f"\nwall time of this invocation: {time.perf_counter() - t_start:.0f} s")
    if a.json:
        write_json(a.json, runs, settings)
        print(f"runs and summary written to {a.json}")


def write_json(path: Path, runs: list[dict], settings: dict) -> None:
    import timm
    import torch

    meta = {"host": platform.node(), "torch": torch.__version__, "timm": timm.__version__, "argv": sys.argv}
    summary = summarise(runs, lambda r: same_settings(r, settings))
    path.write_text(json.dumps({"meta": meta, "runs": runs, "summary": summary}, indent=1, default=str))


if __name__ == "__main__":
    main()
