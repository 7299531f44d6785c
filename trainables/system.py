"""What a trial's process asked of the machine, epoch by epoch: measured inside the trial (no MLflow here),
reported with the epoch's metrics, and logged by the sweep under MLflow's ``system/`` prefix, where the MLflow
UI draws them in a run's "System metrics" charts (names in ``trainables.metrics``).

- data wait: the share of the training loop's wall time spent blocked on the DataLoader for the next batch
  (high: the trial is starved, give it more loader workers or cache decoded images);
- CPU: the CPU time of the trial's process and its DataLoader workers over the epoch, as a share of the cores
  the trial was given (``cpus``); it can pass 100 when other threads (BLAS, Ray) run too;
- peak RSS: the largest resident memory of the process and its workers, sampled every ``SAMPLE_S``;
- GPU (CUDA only): torch's peak allocated memory of the epoch and the device's utilisation (NVML, through
  ``torch.cuda.utilization``; left out, and said so once in the trial's log, when NVML cannot be read).
"""

from __future__ import annotations

import threading
import time
import warnings

import psutil
import torch

from trainables.metrics import SYSTEM_CPU as CPU
from trainables.metrics import SYSTEM_DATA_WAIT as DATA_WAIT
from trainables.metrics import SYSTEM_GPU_PEAK_MEMORY as GPU_PEAK_MEMORY
from trainables.metrics import SYSTEM_GPU_UTIL as GPU_UTIL
from trainables.metrics import SYSTEM_PEAK_RSS as PEAK_RSS

SAMPLE_S = 0.5
MB = 1024 * 1024


class SystemMeter:
    """Samples this process (and its children: DataLoader workers) on a daemon thread. Use as a context
    manager around the epochs: ``begin()`` as an epoch starts, ``epoch(data_wait_s, loop_s)`` as it ends
    returns its metrics."""

    def __init__(self, cpus: int, device: torch.device) -> None:
        self.cpus, self.device = max(1, cpus), device
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._gpu: list[float] = []
        self._nvml = device.type == "cuda"
        self._thread = threading.Thread(target=self._sample_forever, name="cvsweep-system-meter", daemon=True)
        self.begin()

    def __enter__(self) -> SystemMeter:
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def begin(self) -> None:
        self._t0, self._cpu0 = time.perf_counter(), self._cpu_seconds()
        self._peak_rss = self._rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            return [self._proc]

    def _cpu_seconds(self) -> float:
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:  # a worker that exited meanwhile
                pass
        return total

    def _rss(self) -> int:
        total = 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _sample_forever(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            rss = self._rss()
            with self._lock:
                self._peak_rss = max(self._peak_rss, rss)
                if self._nvml:
                    self._gpu.append(self._gpu_utilization())

    def _gpu_utilization(self) -> float:
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception as e:  # noqa: BLE001 - no NVML (pynvml missing, or a driver without it): say so once
            self._nvml = False
            warnings.warn(f"GPU utilisation not recorded: NVML cannot be read ({e})", stacklevel=1)
            return float("nan")

    def epoch(self, data_wait_s: float | None = None, loop_s: float | None = None) -> dict[str, float]:
        """The metrics of the epoch that ended now; ``data_wait_s`` of the training loop's ``loop_s`` were
        spent waiting for batches (none given: no data-wait share, as for a baseline, which has no loader)."""
        wall = max(time.perf_counter() - self._t0, 1e-9)
        cpu = self._cpu_seconds() - self._cpu0
        with self._lock:
            peak = max(self._peak_rss, self._rss())
            gpu = [g for g in self._gpu if g == g]
            self._gpu = []
        out = {CPU: 100.0 * cpu / (wall * self.cpus), PEAK_RSS: peak / MB}
        if data_wait_s is not None and loop_s:
            out[DATA_WAIT] = 100.0 * data_wait_s / loop_s
        if self.device.type == "cuda":
            out[GPU_PEAK_MEMORY] = torch.cuda.max_memory_allocated(self.device) / MB
            if gpu:
                out[GPU_UTIL] = sum(gpu) / len(gpu)
        return out
