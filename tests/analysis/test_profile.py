import pytest
import torch
import torchvision
from torch import nn

from analysis.profile import count_flops, count_params, profile_model
from trainables.latency import measure_latency
from trainables.models import build_model


def test_flops_of_a_conv_and_a_linear_layer_match_the_hand_count():
    # conv 3->8, 3x3, pad 1 on 16x16: 16*16*8 outputs x 3*3*3 multiply-adds; linear 8*16*16 -> 10.
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    macs = 16 * 16 * 8 * 27 + 8 * 16 * 16 * 10
    assert count_flops(model, 16) == 2 * macs


@pytest.mark.parametrize("size", [32, 64])
def test_vit_flops_include_attention(size):
    """vit_tiny (12 blocks, width 192, patch 16) counted by hand: per block, qkv + proj + MLP are
    12*N*D^2 multiply-adds and attention (QK^T and AV) 2*N^2*D, with N = patches + class token."""
    n_patch, d = (size // 16) ** 2, 192
    n = n_patch + 1
    blocks = 12 * (12 * n * d * d + 2 * n * n * d)
    macs = blocks + n_patch * (16 * 16 * 3) * d + d * 10  # + patch embedding + head on the class token
    assert count_flops(build_model("vit_tiny_patch16_224", 10, size), size) == 2 * macs


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "vit_b_16", "convnext_tiny"])
def test_flops_agree_with_torchvisions_published_figures(name):
    """torchvision publishes each model's cost at 224 px as weights.meta["_ops"] under the name "GFLOPs";
    those are multiply-adds (GMACs). vit_b_16 runs its attention through nn.MultiheadAttention's fused
    inference op, which PyTorch's counter alone would count as zero (35% of the model)."""
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]
    flops = count_flops(torchvision.models.get_model(name, weights=None), 224)
    assert flops / 2 / 1e9 == pytest.approx(published, rel=0.01)


def test_latency_is_positive_and_ordered():
    model = build_model("convnext_atto", 10, 32)
    median, p90, n = measure_latency(model, 32, warmup=2, min_repeats=10, min_seconds=0.1)
    assert 0 < median <= p90 and n >= 10


def test_profile_reports_the_parameter_count_and_the_machine():
    model = build_model("resnet18", 10, 32)
    prof = profile_model(model, 32)
    assert prof.params == count_params(model) == sum(p.numel() for p in model.parameters())
    assert prof.macs * 2 == prof.flops and prof.threads == torch.get_num_threads()
    assert prof.device.startswith("cpu") and prof.torch_version == torch.__version__
    assert prof.dtype == "float32" and prof.batch_size > 1 and prof.throughput_ips > 0
    # float32 weights: 4 bytes per parameter and buffer, plus the pickle's names and headers
    assert 4 * prof.params / 1e6 < prof.size_mb < 1.05 * 4 * prof.params / 1e6 + 0.1
