"""Initial weights from a local file, and what happens when timm's ImageNet weights cannot be had.

Every file here is written by the test itself: nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from trainables.config import TrialConfig
from trainables.data import limit_train, load_digits
from trainables.engine import build
from trainables.models import build_model, weights_source

REPO = Path(__file__).resolve().parents[2]
HEAD = {"fc.weight", "fc.bias"}


class NotATensor:
    """Something a checkpoint may carry that only a full (unsafe) unpickler can rebuild."""

    def __init__(self) -> None:
        self.note = "arbitrary code could run here"


@pytest.fixture(scope="module")
def r18_files(tmp_path_factory) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """A random-init ImageNet-shaped resnet18 (1000 classes), saved as .safetensors and as .pth."""
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(1234)
    state = {k: v.detach().clone().contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}
    assert state["fc.weight"].shape == (1000, 512)
    files = {"safetensors": d / "r18.safetensors", "pth": d / "r18.pth"}
    save_file(state, str(files["safetensors"]))
    torch.save(state, files["pth"])
    return state, files


@pytest.mark.parametrize("kind", ["safetensors", "pth"])
def test_a_local_file_gives_every_backbone_tensor_and_a_fresh_head(kind, r18_files):
    saved, files = r18_files
    torch.manual_seed(0)
    model = build_model("resnet18", 7, 32, weights=str(files[kind]))
    got = model.state_dict()
    assert set(got) == set(saved)
    for k in saved.keys() - HEAD:  # weights, biases and batch-norm statistics alike
        assert torch.equal(got[k], saved[k]), k
    # timm drops a classifier of another size: the head is new, sized for this task
    assert got["fc.weight"].shape == (7, 512) and got["fc.bias"].shape == (7,)
    # and it is the same fresh head a random-init model gets under the same seed
    torch.manual_seed(0)
    fresh = build_model("resnet18", 7, 32)
    assert torch.equal(got["fc.weight"], fresh.state_dict()["fc.weight"])
    assert not torch.equal(got["layer1.0.conv1.weight"], fresh.state_dict()["layer1.0.conv1.weight"])


@pytest.mark.parametrize("classes", [10, 1000])
def test_a_fine_tuned_models_file_gives_its_backbone_and_never_its_head_whatever_the_class_counts(classes, tmp_path):
    """timm keeps a file's classifier when this task has as many classes as the hub weights (1000): here a
    10-class file's head would not even fit, and a 10-class task's would be another task's labels."""
    torch.manual_seed(5)
    tuned = timm.create_model("resnet18", num_classes=10).state_dict()
    files = {"whole": tmp_path / "tuned.pth", "checkpoint": tmp_path / "ckpt.pth", "headless": tmp_path / "bb.pth"}
    torch.save(tuned, files["whole"])
    torch.save({"epoch": 3, "state_dict": tuned}, files["checkpoint"])
    torch.save({k: v for k, v in tuned.items() if k not in HEAD}, files["headless"])
    torch.manual_seed(0)
    fresh = build_model("resnet18", classes, 32).state_dict()["fc.weight"]
    for path in files.values():
        torch.manual_seed(0)
        got = build_model("resnet18", classes, 32, weights=str(path)).state_dict()
        assert all(torch.equal(got[k], tuned[k]) for k in tuned.keys() - HEAD), path
        assert torch.equal(got["fc.weight"], fresh), path


def test_a_file_path_with_a_tilde_is_expanded(r18_files, monkeypatch):
    saved, files = r18_files
    monkeypatch.setenv("HOME", str(files["pth"].parent))
    model = build_model("resnet18", 3, 32, weights="~/r18.pth")
    assert torch.equal(model.state_dict()["conv1.weight"], saved["conv1.weight"])
    assert weights_source(model, "~/r18.pth").startswith(f"file:{files['pth'].resolve()} ")


def test_weights_source_names_the_file_and_its_content_hash(r18_files):
    _, files = r18_files
    for path in files.values():
        model = build_model("resnet18", 7, 32, weights=str(path))
        source = weights_source(model, str(path))
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert source.startswith("file:") and str(path.resolve()) in source
        assert sha[:16] in source
    # the two files hold the same tensors but are different files: the record tells them apart
    a, b = (weights_source(build_model("resnet18", 7, 32, weights=str(p)), str(p)) for p in files.values())
    assert a != b
    assert weights_source(build_model("resnet18", 7, 32), "none") == "random init"


def test_a_file_of_another_architecture_is_refused_with_file_and_arch_named(tmp_path):
    path = tmp_path / "convnext_atto.safetensors"
    save_file(timm.create_model("convnext_atto").state_dict(), str(path))
    with pytest.raises(ValueError, match=rf"weights: '{path}' does not load into 'resnet18'"):
        build_model("resnet18", 7, 32, weights=str(path))


def test_a_file_of_another_architecture_is_refused_when_the_head_matches(tmp_path):
    """With a 1000-class head timm loads strictly, and the mismatch reaches the user with file and arch."""
    path = tmp_path / "convnext_atto.safetensors"
    save_file(timm.create_model("convnext_atto").state_dict(), str(path))
    with pytest.raises(ValueError, match=rf"weights: '{path}' does not load into 'resnet18'"):
        build_model("resnet18", 1000, 32, weights=str(path))


def test_a_file_that_covers_only_part_of_the_model_is_refused(tmp_path):
    """resnet34's first blocks have resnet18's names and shapes: loading would half-succeed, silently."""
    path = tmp_path / "resnet34.safetensors"
    save_file(timm.create_model("resnet34").state_dict(), str(path))
    with pytest.raises(ValueError, match=r"does not load into 'resnet18'.* 0 of its \d+ tensors missing.*unexpected"):
        build_model("resnet18", 7, 32, weights=str(path))


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "r18.safetensors"
    with pytest.raises(FileNotFoundError, match=rf"weights: no such file '{path}'"):
        build_model("resnet18", 7, 32, weights=str(path))


def test_a_checkpoint_that_needs_unsafe_unpickling_is_refused(r18_files, tmp_path):
    """timm loads .pth files with weights_only=True: a pickled object other than tensors and plain
    containers is never rebuilt (that would run code from the file); the user is told which file."""
    saved, _ = r18_files
    path = tmp_path / "with_object.pth"
    torch.save({"state_dict": saved, "obj": NotATensor()}, path)
    with pytest.raises(ValueError, match=rf"weights: '{path}' does not load into 'resnet18'.*weights_only") as e:
        build_model("resnet18", 7, 32, weights=str(path))
    assert "NotATensor" in str(e.value)  # the offending global is named
    # the same tensors without the object load fine, from timm's usual {"state_dict": ...} wrapper
    ok = tmp_path / "wrapped.pth"
    torch.save({"state_dict": saved}, ok)
    model = build_model("resnet18", 7, 32, weights=str(ok))
    assert torch.equal(model.state_dict()["conv1.weight"], saved["conv1.weight"])


OFFLINE_CHECK = """
import json
from trainables.models import build_model
try:
    build_model("resnet18", 7, 32, weights="imagenet")
    print(json.dumps({"error": None}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""


@pytest.mark.timeout(120)
def test_imagenet_weights_offline_with_an_empty_cache_fail_with_the_fix(tmp_path):
    """No network and nothing cached: the trial fails at once, saying how to get going. huggingface_hub
    reads HF_HUB_OFFLINE and HF_HOME when imported, so this runs in a fresh interpreter."""
    hf_home = tmp_path / "hf"
    hf_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(hf_home), TORCH_HOME=str(tmp_path / "torch"))
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_CHECK], cwd=REPO, env=env, capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] == "RuntimeError", out
    msg = out["message"]
    assert "weights=imagenet" in msg and "'resnet18'" in msg
    assert "weights=none" in msg and "HF_HOME" in msg and "HF_HUB_OFFLINE" in msg
    assert list(hf_home.rglob("*.safetensors")) == []  # nothing was fetched


@pytest.fixture(scope="module")
def tiny_digits():
    return limit_train(load_digits(), 32, seed=0)


def test_the_trial_records_where_its_weights_came_from(r18_files, tiny_digits):
    saved, files = r18_files
    cpu = torch.device("cpu")
    base = dict(arch="resnet18", img_size=32, max_epochs=2, batch_size=16)
    p = build(TrialConfig(weights=str(files["safetensors"]), **base), tiny_digits, cpu)
    assert p.info["weights_source"].startswith("file:")
    assert str(files["safetensors"].resolve()) in p.info["weights_source"]
    assert torch.equal(p.model.state_dict()["layer4.1.conv2.weight"], saved["layer4.1.conv2.weight"])
    assert p.model.state_dict()["fc.weight"].shape == (tiny_digits.num_classes, 512)
    assert build(TrialConfig(**base), tiny_digits, cpu).info["weights_source"] == "random init"
