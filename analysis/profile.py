"""Cost of a model, measured the same way for every architecture: parameters, FLOPs, latency.

Run after the trials, one model at a time, so a latency number is never measured while other trials
compete for the same cores.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from trainables.latency import measure_latency


@dataclass(frozen=True)
class Profile:
    params: int  # all parameters, trainable or not
    flops: int  # floating-point operations of one forward pass of one image; 1 multiply-add = 2 FLOPs
    input_size: int  # square input side, pixels
    latency_ms_median: float  # batch 1, eval + inference mode
    latency_ms_p90: float
    latency_repeats: int
    device: str
    threads: int  # torch intra-op threads during timing (CPU)
    torch_version: str

    @property
    def macs(self) -> int:
        return self.flops // 2

    def as_dict(self) -> dict:
        return asdict(self)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# PyTorch's counter knows the CUDA attention kernels but not the CPU one that
# F.scaled_dot_product_attention dispatches to on CPU (torch 2.14): without this, a ViT's attention
# matmuls would count as zero here and as non-zero on a GPU.
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop}


def count_flops(model: torch.nn.Module, input_size: int, device: torch.device | str = "cpu") -> int:
    """FLOPs of one real forward pass of a 1-image batch, counted by PyTorch's own operator-level
    counter (convolutions, matmuls and attention; element-wise ops are not counted, as is customary)."""
    model.eval()
    x = torch.zeros(1, 3, input_size, input_size, device=device)
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    with torch.inference_mode(), counter:
        model(x)
    return int(counter.get_total_flops())


def profile_model(model: torch.nn.Module, input_size: int, device: str = "cpu") -> Profile:
    median, p90, n = measure_latency(model, input_size, device)
    return Profile(
        params=count_params(model),
        flops=count_flops(model, input_size, device),
        input_size=input_size,
        latency_ms_median=median,
        latency_ms_p90=p90,
        latency_repeats=n,
        device=torch.cuda.get_device_name(device)
        if str(device).startswith("cuda")
        else f"cpu ({platform.processor() or platform.machine()})",
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
    )
