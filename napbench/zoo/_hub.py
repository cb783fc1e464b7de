"""``napbench.zoo.load("owner/repo", revision=...)``: checkpoints from the Hugging Face Hub.

The repo is downloaded into the ``huggingface_hub`` cache, every file is verified against the
repo's ``napbench.json`` (sha256), and the snapshot folder is loaded like a local checkpoint.
``HF_ENDPOINT`` / ``HF_TOKEN`` / ``HF_HUB_OFFLINE`` apply (see :mod:`napbench.hub`).
"""

from __future__ import annotations

from typing import Any


def load_from_hub(repo_id: str, *, revision: str | None = None, endpoint: str | None = None, token: str | None = None,
                  cache_dir: str | None = None, **kwargs: Any) -> Any:
    """Download, verify, cache and load the checkpoint in Hub model repo ``repo_id``."""
    from napbench.hub import load_checkpoint

    return load_checkpoint(repo_id, revision=revision, endpoint=endpoint, token=token, cache_dir=cache_dir, **kwargs)
