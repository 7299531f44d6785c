"""Cost of a model, measured the same way for every architecture: parameters, FLOPs and MACs, size on
disk, batch-1 latency and batched throughput.

Run after the trials, one model at a time, so a timing is never taken while other trials compete for
the same cores or GPU.
"""

from __future__ import annotations

import io
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from analysis.torch_compat import register_attention_flops
from trainables.latency import LATENCY_MIN_SECONDS, measure_latency, measure_throughput

THROUGHPUT_BATCH = 32  # images per forward pass for the throughput column
NOT_APPLICABLE = "n/a"  # a cost that does not exist for a model (FLOPs of a pipeline that runs outside torch)


@dataclass(frozen=True)
class Profile:
    params: int  # all parameters, trainable or not
    flops: int | None  # of one forward pass of one image, 1 multiply-add = 2 FLOPs; None: not applicable
    input_size: int  # square input side, pixels
    latency_ms_median: float  # batch 1, eval + inference mode
    latency_ms_p90: float
    latency_repeats: int
    throughput_ips: float  # images per second at batch ``batch_size``
    batch_size: int
    size_mb: float  # the float32 state dict as torch.save writes it, 10^6 bytes
    device: str
    threads: int  # torch intra-op threads during timing (CPU)
    dtype: str
    torch_version: str
    # The model exported to ONNX and run by ONNX Runtime on the CPU (``threads`` intra-op threads), batch 1,
    # timed as PyTorch's latency is; None where not measured, with the reason in onnx_note.
    onnx_latency_ms_median: float | None
    onnx_latency_ms_p90: float | None
    onnxruntime_version: str | None
    onnx_note: str
    timing_s: float = LATENCY_MIN_SECONDS  # each timing ran at least this long (and at least 30 runs)

    @property
    def macs(self) -> int | None:
        return None if self.flops is None else self.flops // 2

    def as_dict(self) -> dict:
        return asdict(self)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_dict_bytes(model: torch.nn.Module) -> int:
    """What the model's weights take on disk: its state dict serialized by torch.save."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def count_flops(model: torch.nn.Module, input_size: int, device: torch.device | str = "cpu") -> int:
    """FLOPs of one real forward pass of a 1-image batch in eval + inference mode, counted by PyTorch's
    operator-level counter (convolutions, matmuls and attention; element-wise ops are not counted, as
    in torchvision's and timm's published figures)."""
    register_attention_flops()  # attention on the CPU, nn.MultiheadAttention's fused path
    model.eval()
    x = torch.zeros(1, 3, input_size, input_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return int(counter.get_total_flops())


def device_name(device: torch.device | str) -> str:
    """The GPU's name, or the CPU's model and torch's thread count: what a timing depends on."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:  # Linux; platform.processor() is often empty there
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def profile_model(
    model: torch.nn.Module,
    input_size: int,
    device: str = "cpu",
    batch_size: int = THROUGHPUT_BATCH,
    onnx: bool = True,
    timing_s: float = LATENCY_MIN_SECONDS,
) -> Profile:
    """Everything in the comparison table's cost columns, for one model, float32; with ``onnx``, also
    its ONNX Runtime CPU latency. Each timing runs at least ``timing_s`` seconds. A model that computes
    outside torch (a baseline's ``outside_torch`` says why) has no FLOPs count and no ONNX latency."""
    model.eval().to(device)
    outside = getattr(model, "outside_torch", None)
    median, p90, n = measure_latency(model, input_size, device, min_seconds=timing_s)
    flops = None if outside else count_flops(model, input_size, device)
    throughput = measure_throughput(model, input_size, device, batch_size, min_seconds=timing_s)
    where = device_name(device)
    # After PyTorch's timings, which therefore run exactly as they did before this column existed.
    if outside:
        ort = (None, None, None, f"{NOT_APPLICABLE}: {outside}")
    elif onnx:
        ort = onnx_latency_of(model, input_size, timing_s)
    else:
        ort = (None, None, None, "not measured for this task")
    return Profile(
        params=count_params(model),
        flops=flops,
        input_size=input_size,
        latency_ms_median=median,
        latency_ms_p90=p90,
        latency_repeats=n,
        throughput_ips=throughput,
        batch_size=batch_size,
        size_mb=state_dict_bytes(model) / 1e6,
        device=where,
        threads=torch.get_num_threads(),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        torch_version=torch.__version__,
        onnx_latency_ms_median=ort[0],
        onnx_latency_ms_p90=ort[1],
        onnxruntime_version=ort[2],
        onnx_note=ort[3],
        timing_s=timing_s,
    )


def onnx_latency_of(
    model: torch.nn.Module, input_size: int, timing_s: float = LATENCY_MIN_SECONDS
) -> tuple[float | None, float | None, str | None, str]:
    """(median ms, p90 ms, onnxruntime version, note) of the model exported to ONNX and run by ONNX
    Runtime on the CPU with torch's thread count; an export that fails is reported in the note."""
    from importlib.metadata import version

    from analysis.export import ONNX_FILE, onnx_latency, to_onnx

    with tempfile.TemporaryDirectory() as d:
        try:
            path = to_onnx(model.cpu(), input_size, Path(d) / ONNX_FILE)
            median, p90, _ = onnx_latency(path, input_size, torch.get_num_threads(), timing_s)
        except Exception as e:  # noqa: BLE001 - the other columns still stand; the table says why this one is empty
            return None, None, None, f"ONNX export or ONNX Runtime failed: {type(e).__name__}: {str(e)[:300]}"
    return median, p90, version("onnxruntime"), ""
