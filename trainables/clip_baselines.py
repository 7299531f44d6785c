"""CLIP baselines through open_clip: zero-shot (no training: each class is the text embedding of its name in
the prompt templates; an image goes to the closest) and a linear probe (CLIP's frozen image features and a
logistic regression, scikit-learn's, fitted on the training split).

Either one is a torch module like the sweep's networks (``ClipClassifier``): CLIP's image tower and a linear
head, the zero-shot head being the class text embeddings scaled by CLIP's logit scale and the probe's the
fitted regression. The open_clip model config it was built from travels in its state dict (as UTF-8 bytes),
so a checkpoint rebuilds it anywhere (``from_state``), pretrained weights or not, with nothing fetched.

Weights: an open_clip pretrained tag (from the Hugging Face hub, or its cache when offline), a local file, or
'none' (random weights: the plumbing runs, the numbers mean nothing, and the table says so). Loading them is
checked before Ray starts (``sweeps.classification.check_models``), as timm's are. No Ray, no MLflow here.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainables.config import CLIP_PROBE, CLIP_ZEROSHOT

if TYPE_CHECKING:
    from trainables.config import TrialConfig
    from trainables.data import DatasetSplits
    from trainables.fitted import Fitted

CONFIG_DIR = Path(__file__).resolve().parent / "clip_configs"  # open_clip model configs shipped here
RANDOM = "none"  # clip_pretrained: random weights


def _registered(clip_model: str) -> str:
    """The open_clip name of ``clip_model``: a name as given (this project's configs registered first), or a
    config file, registered under its file name."""
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    if clip_model.endswith(".json"):
        path = Path(clip_model).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"clip_model: no such open_clip model config {str(path)!r}")
        open_clip.add_model_config(path)
        return path.stem
    if clip_model not in open_clip.list_models():
        from trainables.registry import closest

        hint = closest(clip_model, open_clip.list_models(), n=5)
        raise ValueError(
            f"clip_model: open_clip has no model named {clip_model!r}"
            + (f". Closest: {', '.join(hint)}" if hint else "")
            + " (open_clip.list_models(); or the path of a model config .json)"
        )
    return clip_model


def create_clip(clip_model: str, clip_pretrained: str):  # noqa: ANN201 - an open_clip CLIP
    """open_clip's model with its weights: an error that says what to do when they cannot be had."""
    import open_clip

    name = _registered(clip_model)
    if clip_pretrained == RANDOM:
        return open_clip.create_model(name, pretrained=None)
    if clip_pretrained.endswith((".bin", ".pt", ".pth", ".safetensors")) and not Path(clip_pretrained).is_file():
        raise FileNotFoundError(f"clip_pretrained: no such weights file {clip_pretrained!r}")
    try:
        return open_clip.create_model(name, pretrained=clip_pretrained, require_pretrained=True)
    except Exception as e:  # noqa: BLE001 - any download, cache or file failure reaches the user with the fix
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise RuntimeError(
            f"clip_pretrained={clip_pretrained!r}: could not load open_clip weights for {name!r} "
            f"({type(e).__name__}: {str(e)[:300]}). Tags for this model: {', '.join(tags) or 'none'}. To fix: connect "
            "to the Hugging Face hub once so they are cached (HF_HOME, default ~/.cache/huggingface), copy a filled "
            "cache to this machine, point clip_pretrained at a local weights file, or use clip_pretrained: none "
            "(random weights, for a test of the plumbing only)."
        ) from e


class ClipClassifier(torch.nn.Module):
    """CLIP's image tower and a linear head over its L2-normalised features: (N, 3, S, S) images, normalised as
    ``data_config`` says, in; (N, classes) logits out."""

    def __init__(self, visual: torch.nn.Module, embed_dim: int, num_classes: int, model_config: dict) -> None:
        super().__init__()
        self.visual = visual
        self.head = torch.nn.Linear(embed_dim, num_classes)
        raw = json.dumps(model_config, sort_keys=True).encode()
        self.register_buffer("model_config", torch.tensor(list(raw), dtype=torch.uint8))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.visual(x)
        return f / f.norm(dim=-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def from_state(num_classes: int, state: dict[str, torch.Tensor]) -> ClipClassifier:
    """An empty ClipClassifier of the shape a checkpoint holds, its open_clip config read from the checkpoint."""
    import open_clip

    config = json.loads(bytes(state["model_config"].tolist()).decode())
    with tempfile.TemporaryDirectory() as d:
        name = "cvsweep-checkpoint-" + hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
        path = Path(d) / f"{name}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
        clip = open_clip.create_model(name, pretrained=None)
    return ClipClassifier(clip.visual, config["embed_dim"], num_classes, config)


def data_config(clip) -> dict[str, Any]:  # noqa: ANN001 - an open_clip model
    """CLIP's own preprocessing in timm's data-config shape: resize the shorter side to the model's size,
    centre crop, CLIP's mean/std (what open_clip's eval transform does)."""
    pp = clip.visual.preprocess_cfg
    size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
    return {
        "input_size": (3, size, size),
        "interpolation": pp["interpolation"],
        "mean": tuple(float(v) for v in pp["mean"]),
        "std": tuple(float(v) for v in pp["std"]),
        "crop_pct": 1.0,
        "crop_mode": "center",
    }


def fit_clip(cfg: TrialConfig, splits: DatasetSplits, device: torch.device) -> Fitted:
    """Zero-shot: the head is the prompts' text embeddings, nothing is fitted. Probe: a logistic regression on
    the training split's image features becomes the head."""
    import open_clip

    from trainables.augment import eval_transform
    from trainables.fitted import Fitted, features_of

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)  # random weights (clip_pretrained: none) are the trial's seed's
    clip = create_clip(cfg.clip_model, cfg.clip_pretrained).eval().to(device)
    name = _registered(cfg.clip_model)  # as create_clip found it
    config = open_clip.get_model_config(name)
    model = ClipClassifier(clip.visual, config["embed_dim"], splits.num_classes, config).eval().to(device)
    dc = data_config(clip)
    weights = "random init" if cfg.clip_pretrained == RANDOM else f"open_clip:{cfg.clip_model}/{cfg.clip_pretrained}"

    @torch.inference_mode()
    def feats(x: torch.Tensor) -> torch.Tensor:
        return model.features(x.to(device)).float().cpu()

    x_train, y_train = features_of(splits.train, eval_transform(dc), feats)
    with torch.inference_mode():
        if cfg.arch == CLIP_ZEROSHOT:
            templates = cfg.clip_prompts.split("|")
            tokenizer = open_clip.get_tokenizer(name)
            text = open_clip.build_zero_shot_classifier(
                clip, tokenizer, list(splits.classes), templates, num_classes_per_batch=10, device=device
            )  # (embed_dim, classes), each column L2-normalised
            model.head.weight.copy_(clip.logit_scale.exp() * text.T)
            model.head.bias.zero_()
            source = f"{weights}; zero-shot, {len(templates)} prompt template(s)"
        elif cfg.arch == CLIP_PROBE:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=cfg.probe_c, max_iter=2000).fit(x_train.numpy(), y_train)
            w, b = torch.as_tensor(lr.coef_, dtype=torch.float32), torch.as_tensor(lr.intercept_, dtype=torch.float32)
            if len(lr.classes_) == 2:  # one logit for the second class: softmax([0, z]) = sigmoid(z)
                w, b = torch.cat([torch.zeros_like(w), w]), torch.cat([torch.zeros_like(b), b])
            if list(lr.classes_) != list(range(splits.num_classes)):
                raise ValueError(f"clip_probe: the training split lacks classes: it has {list(lr.classes_)}")
            model.head.weight.copy_(w.to(device))
            model.head.bias.copy_(b.to(device))
            source = f"{weights}; linear probe fitted by scikit-learn LogisticRegression (C={cfg.probe_c:g})"
        else:
            raise ValueError(f"arch: {cfg.arch!r} is not a CLIP baseline ({CLIP_ZEROSHOT}, {CLIP_PROBE})")
    for p in model.parameters():  # nothing here is trained by gradient
        p.requires_grad_(False)
    head_w, head_b = model.head.weight.detach().cpu(), model.head.bias.detach().cpu()

    def scores(x: torch.Tensor) -> np.ndarray:
        return (x @ head_w.T + head_b).numpy()

    return Fitted(model.eval(), dc, feats, scores, (x_train, y_train), time.perf_counter() - t0, source)
