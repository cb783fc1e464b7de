"""Hugging Face Hub: publish datasets and checkpoints, download, verify and cache them.

* :func:`export_dataset` / :func:`export_checkpoint` write a repo folder in Hub layout (no
  network): a dataset repo holds ``data/train.parquet``, a dataset card ``README.md`` (family,
  size, label columns, provenance, licence and a ``configs`` section, so
  ``datasets.load_dataset(repo)`` reads it too) and ``napbench.json`` (sha256 of every file);
  a model repo holds the checkpoint folder (``config.json``, ``model.safetensors``, the model
  card with its measured metrics) plus ``napbench.json``. :func:`export_dvc_store` writes the
  DVC objects of recorded outputs as a dataset repo laid out like a DVC remote
  (``files/md5/xx/...``), so ``<endpoint>/datasets/<repo>/resolve/main`` is a read-only DVC HTTP
  remote: a fresh clone runs ``dvc pull -r hub`` instead of rebuilding.
* :func:`push_folder` pushes such a folder as one commit through ``huggingface_hub``'s
  ``HfApi`` (``create_repo`` + ``create_commit``), checks the pushed revision's tree against
  the local files, and only then records the revision in a publish record (JSON). Failures
  (server down, 401, 5xx, an upload cut off) are retried ``retries`` times and end in one
  :class:`~napbench.errors.HubError` line; nothing is recorded for a failed push.
* :func:`download` fetches a revision into the ``huggingface_hub`` cache and verifies every
  file against ``napbench.json``; :func:`load_dataset` and :func:`load_checkpoint` load it.
  ``HF_HUB_OFFLINE=1`` serves from the cache.

Settings are the standard ones, read at call time: ``HF_ENDPOINT`` (default
``https://huggingface.co``), ``HF_TOKEN``, ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE``.
``NAPBENCH_HUB_NAMESPACE`` is the default owner of napbench repos (``napbench``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napbench._io import atomic_dir, atomic_write_text
from napbench.errors import HubError, NapbenchError

__all__ = [
    "DVC_STORE", "MANIFEST", "dataset_repo_id", "download", "dvc_remote_url", "export_checkpoint", "export_dataset",
    "export_dvc_store", "load_checkpoint", "load_dataset", "push_folder", "read_record",
]

MANIFEST = "napbench.json"
DATA_FILE = "data/train.parquet"
NAMESPACE_ENV = "NAPBENCH_HUB_NAMESPACE"
#: default name of the dataset repo holding the DVC objects of the built datasets
DVC_STORE = "dvc-store"
_OFF = ("", "0", "false", "no", "off")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git_blob_oid(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _endpoint(endpoint: str | None) -> str | None:
    return endpoint or os.environ.get("HF_ENDPOINT") or None


def _token(token: str | None) -> str | None:
    return token or os.environ.get("HF_TOKEN") or None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in _OFF


def dataset_repo_id(family: str, namespace: str | None = None) -> str:
    """Default dataset repo of a family: ``<namespace>/napbench-<family>``."""
    return f"{namespace or os.environ.get(NAMESPACE_ENV) or 'napbench'}/napbench-{family.replace('_', '-')}"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _write_manifest(folder: Path, extra: Mapping[str, Any]) -> None:
    files = {p.relative_to(folder).as_posix(): _sha256(p) for p in _files(folder) if p.name != MANIFEST}
    atomic_write_text(folder / MANIFEST, json.dumps({**extra, "files": files}, indent=2, sort_keys=True) + "\n")


def _is_repo_folder(p: Path) -> bool:
    return (p / MANIFEST).is_file()


# -- export (no network) ------------------------------------------------------------------
def _dataset_card(family: str, md: Mapping[str, Any], n_rows: int, *, license: str, provenance: str) -> str:
    labels = list(md.get("label_columns") or [])
    size = "10K<n<100K" if n_rows >= 10_000 else ("1K<n<10K" if n_rows >= 1_000 else "n<1K")
    front = [
        "---",
        f"license: {license}",
        f"pretty_name: napbench {family}",
        "tags:",
        "- napbench",
        "- neural-architecture-search",
        "- computation-graphs",
        "size_categories:",
        f"- {size}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {DATA_FILE}",
        "---",
        "",
    ]
    body = [
        f"# napbench dataset `{family}`",
        "",
        str(md.get("description") or ""),
        "",
        f"- family: `{family}`",
        f"- architectures: {n_rows:,}",
        f"- label columns: {', '.join(f'`{c}`' for c in labels) if labels else 'none (unlabelled family)'}",
        f"- default label: `{md.get('default_label')}`" if md.get("default_label") else "- default label: none",
        f"- vocabulary {md.get('vocab_version')}, converter {md.get('converter_version')}, schema {md.get('schema_version')}",
        "",
        "## Provenance",
        "",
        provenance,
        "",
        "## Licence",
        "",
        (f"This dataset card and the computation graphs: {license}. Label values come from the upstream "
         "benchmarks named above, under their own licences."),
        "",
        "## Load",
        "",
        "```python",
        "import napbench.datasets",
        f"ds = napbench.datasets.load({family!r}, source=\"hub\")",
        "# or, as a plain table: datasets.load_dataset(\"<this repo>\")",
        "```",
        "",
    ]
    return "\n".join(front + body)


def _provenance(family: str, md: Mapping[str, Any]) -> str:
    up = md.get("upstream") or {}
    lines = [f"Computation graphs traced by napbench from the exact `{family}` torch builders."]
    if up:
        lines.append("Labels joined from these upstream tables (sha256-checked):")
        lines += [f"- `{rel}` sha256 `{sha}`" for rel, sha in sorted(up.items())]
    return "\n".join(lines)


def export_dataset(
    path: str | os.PathLike[str], out: str | os.PathLike[str], *, license: str = "apache-2.0",
    upstream: Mapping[str, str] | None = None,
) -> Path:
    """Write the dataset repo folder of the Parquet dataset ``path`` into ``out`` (replaced as a whole)."""
    import pyarrow.parquet as pq

    from napbench.conversion.storage import read_metadata

    src = Path(path)
    md = dict(read_metadata(src))
    if upstream:
        md["upstream"] = dict(upstream)
    family = str(md.get("family") or src.stem)
    n_rows = pq.read_metadata(src).num_rows
    with atomic_dir(out, is_ours=_is_repo_folder, what="Hub repo folder") as tmp:
        (tmp / "data").mkdir()
        shutil.copyfile(src, tmp / DATA_FILE)
        (tmp / "README.md").write_text(_dataset_card(family, md, n_rows, license=license, provenance=_provenance(family, md)),
                                       encoding="utf-8")
        _write_manifest(tmp, {"kind": "dataset", "family": family, "rows": n_rows,
                              "vocab_version": md.get("vocab_version"), "converter_version": md.get("converter_version")})
    return Path(out)


def export_checkpoint(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the model repo folder of a checkpoint folder into ``out`` (replaced as a whole)."""
    src = Path(checkpoint)
    cfg_file = src / "config.json"
    if not cfg_file.is_file():
        raise HubError(f"{str(src)!r} has no config.json; expected a napbench checkpoint folder")
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    with atomic_dir(out, is_ours=_is_repo_folder, what="Hub repo folder") as tmp:
        for p in _files(src):
            dest = tmp / p.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
        _write_manifest(tmp, {"kind": "checkpoint", "predictor": cfg.get("predictor"), "vocab_version": cfg.get("vocab_version")})
    return Path(out)


def dvc_remote_url(repo_id: str, *, endpoint: str | None = None, revision: str = "main") -> str:
    """The DVC HTTP remote URL of a store repo: ``<endpoint>/datasets/<repo_id>/resolve/<revision>``."""
    return f"{(_endpoint(endpoint) or 'https://huggingface.co').rstrip('/')}/datasets/{repo_id}/resolve/{revision}"


def _store_card(repo_id: str, objects: list[Any]) -> str:
    rows = [f"| `{o.stage}` | `{o.path}` | `{o.md5}` |" for o in objects]
    return "\n".join([
        "---",
        "license: apache-2.0",
        "pretty_name: napbench DVC store",
        "tags:",
        "- napbench",
        "- dvc",
        "---",
        "",
        "# napbench DVC store",
        "",
        "The DVC cache objects of napbench's built datasets, laid out as a DVC remote",
        "(`files/md5/<2 hex>/<30 hex>`), so this repo's `resolve/main` URL is a read-only DVC HTTP remote.",
        "In a clone of napbench (its `.dvc/config` names this remote `hub`):",
        "",
        "```bash",
        "dvc pull -r hub build        # the datasets that dvc.lock records, without rebuilding",
        "```",
        "",
        f"Remote URL: `{dvc_remote_url(repo_id, endpoint='https://huggingface.co')}`. Objects of earlier",
        "dvc.lock records stay in the repo, so older clones pull too.",
        "",
        "| stage | output | md5 |",
        "|---|---|---|",
        *rows,
        "",
    ])


def export_dvc_store(objects: list[Any], out: str | os.PathLike[str], *, repo_id: str | None = None) -> Path:
    """Write the DVC objects ``objects`` (:class:`napbench._dvc.CacheObject` with a ``source``) into
    ``out`` (replaced as a whole) under their remote keys, with a card and ``napbench.json``."""
    if not objects:
        raise HubError("no DVC object to export; expected outputs recorded by `dvc repro` (or `dvc commit`)")
    missing = [o.path for o in objects if o.source is None]
    if missing:
        raise HubError(f"DVC objects of {missing} are not in the cache; expected outputs recorded by "
                       "`dvc repro` (or `dvc commit`) before exporting the DVC store")
    repo_id = repo_id or f"{os.environ.get(NAMESPACE_ENV) or 'napbench'}/{DVC_STORE}"
    with atomic_dir(out, is_ours=_is_repo_folder, what="Hub repo folder") as tmp:
        for o in objects:
            dest = tmp / o.key
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(o.source, dest)
        (tmp / "README.md").write_text(_store_card(repo_id, objects), encoding="utf-8")
        _write_manifest(tmp, {"kind": "dvc-store", "objects": {o.key: {"stage": o.stage, "path": o.path} for o in objects}})
    return Path(out)


# -- push ---------------------------------------------------------------------------------
def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The publish record (``{repo_type/repo_id: {revision, files, when}}``); empty when absent."""
    p = Path(path)
    if not p.is_file():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _status(exc: BaseException) -> int | None:
    resp = getattr(exc, "response", None)
    return getattr(resp, "status_code", None)


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    repo_type: str = "dataset",
    endpoint: str | None = None,
    token: str | None = None,
    private: bool = False,
    retries: int = 2,
    retry_delay_s: float = 2.0,
    record: str | os.PathLike[str] | None = None,
    message: str | None = None,
) -> str:
    """Push every file of ``folder`` to ``repo_id`` as one commit; returns the pushed revision.

    The repo is created when missing. After the commit the revision's tree is listed and each
    file's git blob id compared with the local file; only a complete, matching revision is
    written to ``record``. Connection errors and 5xx answers are retried (``retries`` times,
    doubling ``retry_delay_s``); 401/403 are not. Raises :class:`HubError` with one line.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    src = Path(folder)
    if not _is_repo_folder(src):
        raise HubError(f"{str(src)!r} has no {MANIFEST}; expected a folder made by napbench.hub.export_*")
    if repo_type not in ("dataset", "model"):
        raise HubError(f"repo type {repo_type!r}; expected 'dataset' or 'model'")
    if _offline():
        raise HubError(f"cannot push {repo_id!r}: HF_HUB_OFFLINE is set; expected it unset to publish")
    files = _files(src)
    api = HfApi(endpoint=_endpoint(endpoint), token=_token(token))
    where = api.endpoint
    attempt, delay = 0, retry_delay_s
    while True:
        try:
            api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
            ops = [CommitOperationAdd(path_in_repo=p.relative_to(src).as_posix(), path_or_fileobj=str(p)) for p in files]
            info = api.create_commit(repo_id, ops, repo_type=repo_type,
                                     commit_message=message or f"napbench publish {repo_id}")
            revision = info.oid
            tree = {f.path: f.blob_id for f in api.list_repo_tree(repo_id, repo_type=repo_type, revision=revision, recursive=True)
                    if getattr(f, "blob_id", None) is not None and not hasattr(f, "tree_id")}
            break
        except NapbenchError:
            raise
        except Exception as exc:
            status = _status(exc)
            if status in (401, 403):
                raise HubError(f"push of {repo_id!r} to {where} refused ({status}): set HF_TOKEN to a token with write access") from exc
            if attempt >= retries:
                raise HubError(f"push of {repo_id!r} to {where} failed after {attempt + 1} attempt(s): {_one_line(exc)}") from exc
            attempt += 1
            time.sleep(delay)
            delay *= 2
    wrong = [p.relative_to(src).as_posix() for p in files if tree.get(p.relative_to(src).as_posix()) != _git_blob_oid(p)]
    if wrong:
        raise HubError(f"revision {revision} of {repo_id!r} does not hold the pushed content of {wrong}; not recorded as published")
    if record is not None:
        rec = read_record(record)
        rec[f"{repo_type}/{repo_id}"] = {
            "revision": revision, "endpoint": where, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": json.loads((src / MANIFEST).read_text(encoding="utf-8"))["files"],
        }
        atomic_write_text(record, json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return revision


# -- download -----------------------------------------------------------------------------
def download(
    repo_id: str,
    *,
    repo_type: str = "dataset",
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Download (or, offline, find in the cache) a napbench repo revision and verify it.

    Every file listed in its ``napbench.json`` must be present with that sha256; returns the
    snapshot folder. Raises :class:`HubError` naming what failed.
    """
    from huggingface_hub import snapshot_download

    try:
        snap = Path(snapshot_download(
            repo_id, repo_type=repo_type, revision=revision, endpoint=_endpoint(endpoint), token=_token(token),
            cache_dir=str(cache_dir) if cache_dir is not None else None, local_files_only=_offline(),
        ))
    except Exception as exc:
        mode = " (offline: HF_HUB_OFFLINE is set and it is not in the cache)" if _offline() else ""
        raise HubError(f"cannot fetch {repo_type} {repo_id!r}"
                       f"{'@' + revision if revision else ''} from {_endpoint(endpoint) or 'the Hub'}{mode}: {_one_line(exc)}") from exc
    man = snap / MANIFEST
    if not man.is_file():
        raise HubError(f"{repo_type} {repo_id!r} has no {MANIFEST}; expected a repo published by napbench")
    manifest = json.loads(man.read_text(encoding="utf-8"))
    for rel, sha in manifest.get("files", {}).items():
        f = snap / rel
        if not f.is_file():
            raise HubError(f"{repo_type} {repo_id!r}: {rel} is missing from the download; expected every file of {MANIFEST}")
        if _sha256(f) != sha:
            raise HubError(f"{repo_type} {repo_id!r}: {rel} has sha256 {_sha256(f)[:12]}..., expected {sha[:12]}... (corrupt download)")
    return snap


def load_dataset(
    family: str, *, repo_id: str | None = None, revision: str | None = None, endpoint: str | None = None,
    token: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """The :class:`~napbench.datasets.GraphDataset` of ``family`` from its Hub dataset repo."""
    from napbench.datasets import load_file

    snap = download(repo_id or dataset_repo_id(family), repo_type="dataset", revision=revision, endpoint=endpoint,
                    token=token, cache_dir=cache_dir)
    return load_file(snap / DATA_FILE)


def load_checkpoint(
    repo_id: str, *, revision: str | None = None, endpoint: str | None = None, token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None, **kwargs: Any,
) -> Any:
    """A predictor from a Hub model repo (downloaded, verified, cached)."""
    from napbench.zoo import load

    snap = download(repo_id, repo_type="model", revision=revision, endpoint=endpoint, token=token, cache_dir=cache_dir)
    return load(snap, **kwargs)
