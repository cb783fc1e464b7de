"""Checkpoint folders: checks, loading, and composite (member) sub-folders.

A checkpoint is a folder:

* ``config.json`` -- the predictor's init arguments plus ``predictor`` (registered name),
  ``vocab_version`` (of :mod:`napbench.conversion.vocab`), ``features_version`` and
  ``training`` (what ``fit`` / ``fine_tune`` / ``pretrain`` recorded);
* ``model.safetensors`` -- the state dict;
* ``README.md`` -- the model card (:mod:`napbench.zoo._card`);
* composites only: ``members/<i>-<name>/``, one complete checkpoint folder per member (listed in
  ``config.json`` under ``member_dirs``)
  (an ensemble saves its members there and :func:`load` rebuilds them in one call).

Folders are written through :func:`napbench._io.atomic_dir` with :func:`is_checkpoint_folder`
as the ``is_ours`` check: a folder that is not a napbench checkpoint is never replaced.
Loading a checkpoint made with another vocabulary version raises
:class:`~napbench.errors.VersionMismatchError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napbench.conversion.vocab import VOCAB_VERSION
from napbench.errors import CheckpointError, VersionMismatchError

if TYPE_CHECKING:  # pragma: no cover
    from napbench.zoo._interface import Predictor

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
MEMBERS_DIR = "members"
#: config keys napbench adds next to the init arguments
RESERVED_CONFIG_KEYS = ("predictor", "vocab_version", "features_version", "napbench_version", "training", "member_dirs")

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "MEMBERS_DIR",
    "WEIGHTS_NAME",
    "CheckpointError",
    "check_checkpoint_config",
    "is_checkpoint_folder",
    "load",
    "load_members",
    "read_config",
    "save_members",
]


def is_checkpoint_folder(path: Path) -> bool:
    """Whether ``path`` is a napbench checkpoint folder (config.json with a ``predictor`` key) or empty."""
    path = Path(path)
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    try:
        return "predictor" in json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def check_checkpoint_config(config: Mapping[str, Any], where: str) -> None:
    """Refuse a checkpoint config without a predictor name or from another vocabulary version."""
    if "predictor" not in config:
        raise CheckpointError(f"{where!r}: {CONFIG_NAME} has no 'predictor' key; expected a napbench checkpoint")
    found = config.get("vocab_version")
    if found != VOCAB_VERSION:
        raise VersionMismatchError(
            f"checkpoint {where!r} was made with op vocabulary version {found}; this napbench uses vocabulary "
            f"version {VOCAB_VERSION} - retrain the predictor or install a matching napbench"
        )


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked ``config.json`` of a local checkpoint folder."""
    path = Path(folder).expanduser()
    cfg_file = path / CONFIG_NAME
    if not cfg_file.is_file():
        raise CheckpointError(f"{str(folder)!r} has no {CONFIG_NAME}; expected a napbench checkpoint folder (config.json + {WEIGHTS_NAME})")
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_file} is not valid JSON ({exc.msg}); expected a napbench checkpoint config") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{cfg_file} is not UTF-8 text; expected a napbench checkpoint config (JSON)") from None
    except OSError as exc:
        raise CheckpointError(f"{cfg_file} cannot be read ({exc.strerror}); expected a napbench checkpoint config") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_file} holds a {type(config).__name__}; expected a JSON object")
    check_checkpoint_config(config, str(folder))
    return config


def _member_dir(i: int, name: str) -> str:
    return f"{i:02d}-" + re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def save_members(directory: Path, members: Sequence[tuple[str, Predictor]]) -> list[str]:
    """Write each ``(name, predictor)`` as a checkpoint sub-folder of ``directory/members``;
    returns the sub-folder names (in order), which the composite records in its config."""
    out = []
    for i, (name, member) in enumerate(members):
        sub = _member_dir(i, name)
        member.write_checkpoint(directory / MEMBERS_DIR / sub)
        out.append(sub)
    return out


def load_members(folder: str | os.PathLike[str], subdirs: Sequence[str]) -> list[Predictor]:
    """Load the member checkpoints a composite recorded (see :func:`save_members`)."""
    root = Path(folder) / MEMBERS_DIR
    missing = [s for s in subdirs if not (root / s).is_dir()]
    if missing:
        raise CheckpointError(f"composite checkpoint {str(folder)!r} lacks member folder(s) {missing}; expected {list(subdirs)} under {MEMBERS_DIR}/")
    return [load(root / s) for s in subdirs]


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: the explicit form of a Hugging Face Hub id
HUB_PREFIX = "hf://"


def load(path_or_name: str | os.PathLike[str], **kwargs: Any) -> Predictor:
    """Load a checkpoint: a local folder, or a Hub repo (``hf://owner/name``, or ``owner/name`` with ``revision=``).

    The folder's ``config.json`` names the predictor class; ``kwargs`` go to
    ``from_pretrained`` (e.g. ``revision=``, ``map_location=``). Composite checkpoints load
    their members from their sub-folders. A path that does not exist fails at once (no
    network); the Hub is asked only when meant, and ``HF_HUB_OFFLINE=1`` serves it from the cache.
    """
    from napbench.zoo._interface import Predictor
    from napbench.zoo._registry import list_predictors, predictor_class

    text = str(path_or_name)
    if text.startswith(HUB_PREFIX):
        repo = text[len(HUB_PREFIX):]
        if not _REPO_ID.match(repo):
            raise CheckpointError(f"Hub id {text!r} is malformed; expected hf://owner/name")
        return _hub_load(repo, **kwargs)
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        config = read_config(path)
        predictor_class(config["predictor"])  # unknown names list the valid ones
        return Predictor.from_pretrained(str(path), **kwargs)
    if path.exists():
        raise CheckpointError(f"{text!r} is a file; expected a checkpoint folder (config.json + {WEIGHTS_NAME})")
    if kwargs.get("revision") and _REPO_ID.match(text) and not text.startswith((".", "~", "/")):
        return _hub_load(text, **kwargs)  # a revision= makes a bare owner/name an explicit Hub id
    hint = f"; {text!r} is a predictor name - build it with napbench.zoo.get_predictor({text!r})" if text in list_predictors() else ""
    if not hint and _REPO_ID.match(text) and not text.startswith((".", "~", "/")):
        hint = f"; for a Hugging Face Hub repo write hf://{text}"
    raise CheckpointError(f"checkpoint folder {text!r} not found; expected a folder with {CONFIG_NAME} + {WEIGHTS_NAME}{hint}")


def _hub_load(repo_id: str, **kwargs: Any) -> Predictor:
    from napbench.zoo._hub import load_from_hub

    return load_from_hub(repo_id, **kwargs)
