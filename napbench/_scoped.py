"""Scoped, thread-safe forms of torch's process-wide settings.

``torch.set_num_threads`` and the global RNG belong to the whole process. Prefect's threaded
task runner runs several tasks at once in one process, so a plain save/set/restore would
let one task restore the thread count under another, or draw from the RNG state another
task seeded. These context managers are the only places napbench touches them:

* :func:`torch_threads` counts the blocks that are inside it: the first saves the
  process's setting, the last restores it, so concurrent blocks never leave a wrong value;
* :func:`seeded_torch` holds one process-wide lock while it forks, seeds and uses the global
  RNG, so seeded draws (weight initialisation) are reproducible under threads. Keep such
  blocks short: only the seeded draws belong inside.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["seeded_torch", "torch_threads"]

_THREADS_LOCK = threading.Lock()
_threads_state: dict[str, int] = {"active": 0, "saved": 0}
_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``; the process's own value comes back
    when the last concurrent block exits (None: unchanged).

    Graph predictors work on small tensors, where intra-op threads cost more than they save
    and, on a shared CPU, oversubscription slows training by an order of magnitude or more.
    """
    import torch

    if n is None:
        yield
        return
    with _THREADS_LOCK:
        if _threads_state["active"] == 0:
            _threads_state["saved"] = torch.get_num_threads()
        _threads_state["active"] += 1
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _threads_state["active"] -= 1
            if _threads_state["active"] == 0:
                torch.set_num_threads(_threads_state["saved"])


@contextlib.contextmanager
def seeded_torch(seed: int, devices: list[object] | None = None) -> Iterator[None]:
    """Run the block with torch's global RNG seeded to ``seed``, then restore its state;
    one block at a time per process, so threads never interleave their draws. ``devices``:
    the CUDA devices whose RNG is forked too (``torch.random.fork_rng``; default: all visible)."""
    import torch

    with _RNG_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def reset_parameters(module: object) -> None:
    """Re-initialise every submodule of a torch ``module`` from the current torch RNG (deterministic
    under :func:`seeded_torch`). ``nn.MultiheadAttention`` names its initialiser
    ``_reset_parameters``; it is reset too, so no weight keeps an unseeded construction-time draw."""
    for m in module.modules():  # type: ignore[attr-defined]
        if m is module:
            continue
        init = getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)
        if callable(init):
            init()
