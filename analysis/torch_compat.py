"""FLOP formulas for two private aten ops that PyTorch's ``FlopCounterMode`` does not count, registered
through its public ``register_flop_formula``. Without them, attention would count as zero:

- ``aten._scaled_dot_product_flash_attention_for_cpu``: what ``F.scaled_dot_product_attention``
  dispatches to on the CPU (timm's ViTs); torch's counter knows only the CUDA attention kernels;
- ``aten._native_multi_head_attention``: ``nn.MultiheadAttention``'s fused path in eval + inference mode
  (torchvision's ViTs).

``tests/test_compat.py`` fails, naming the op and torch's version, when an op moves, changes its leading
arguments, gets a formula of torch's own, or torch leaves ``CHECKED``. Nothing is registered at import.
"""

from __future__ import annotations

import threading

CHECKED = {"torch": ">=2.14,<2.15"}  # pyproject admits torch >=2.4,<2.15; these ops were read in 2.14
CPU_SDPA = "_scaled_dot_product_flash_attention_for_cpu"  # (query, key, value, dropout_p, ...)
MHA_FASTPATH = "_native_multi_head_attention"  # (query, key, value, embed_dim, num_head, qkv_weight, ...)


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _mha_fastpath_flop(query_shape, key_shape, value_shape, embed_dim, num_head, *args, out_shape=None, **kw) -> int:
    """Q/K/V projections, the two attention matmuls and the output projection, counted as the unfused
    layers would be. Shapes (batch, length, embed_dim)."""
    from torch.utils.flop_counter import sdpa_flop_count

    b, q_len, e = query_shape
    kv_len = key_shape[1]
    head = e // num_head
    projections = 2 * b * e * e * (q_len + 2 * kv_len + q_len)  # Q, K, V in; output out
    attention = sdpa_flop_count((b, num_head, q_len, head), (b, num_head, kv_len, head), (b, num_head, kv_len, head))
    return projections + attention


FORMULAS = {CPU_SDPA: _cpu_sdpa_flop, MHA_FASTPATH: _mha_fastpath_flop}  # aten op name -> FLOPs from shapes
_registered: set[str] = set()
_lock = threading.Lock()  # torch refuses a second registration: two threads must not both register


def register_attention_flops() -> None:
    """Teach torch's FLOP counter ``FORMULAS``, once per process. Call it before a ``FlopCounterMode`` is
    made: the counter copies torch's registry when it is made."""
    import torch
    from torch.utils.flop_counter import register_flop_formula

    with _lock:
        for name, formula in FORMULAS.items():
            if name in _registered:
                continue
            try:
                register_flop_formula(getattr(torch.ops.aten, name))(formula)
            except RuntimeError as e:  # a second formula for one op: torch has one of its own now
                raise RuntimeError(
                    f"torch {torch.__version__} counts aten.{name} itself now: drop this project's formula "
                    f"(analysis/torch_compat.py) once the counts are checked against the published figures"
                ) from e
            _registered.add(name)
