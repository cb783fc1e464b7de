"""Fuzz suite (issue 7): seeded bad inputs for every CLI command and public loader.

Each generated case runs ``napbench.cli.main`` in-process and asserts: exit code 2, exactly
one line on stderr (``napbench: error: ...``, not an internal error), no traceback, no file
created and every pre-existing file byte-identical. Cases that damage a file also call the
matching public loader (``read_graphs``, ``load_file``, ``from_onnx``, ``zoo.load``) and
assert it raises a :class:`~napbench.errors.NapbenchError`.

Damaged files are drawn with a seeded RNG: truncations, bit flips and garbage of a valid
Parquet dataset, ONNX model, ``model.safetensors`` and ``config.json``. A drawn bit flip is
kept only when the format's own reference reader (pyarrow with page checksums, onnx's
checker, safetensors, json) rejects the flipped file: a flip that leaves a valid file (a
changed float in a weight) is not a bad input, and is redrawn.
"""

from __future__ import annotations

import json
import random
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from reliability_inputs import dataset_file, flops_checkpoint, model_file, onnx_model, run_cli, snapshot

from napbench.errors import NapbenchError

SEED = 20261201
READ_ONLY_DIR = "/sys"  # a file system no process may create files in (also as root)


@dataclass
class Case:
    """One generated bad input: files to place in the case folder, the argv, an optional loader call."""

    id: str
    argv: list[str]  # "{d}" is replaced by the case folder
    files: dict[str, str | bytes] = field(default_factory=dict)  # name -> pristine key or raw bytes
    loader: Callable[[Path], object] | None = None
    expect: str = ""


# -- pristine inputs (built once per session) -----------------------------------------------------
@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, bytes | Path]:
    d = tmp_path_factory.mktemp("pristine")
    ck = flops_checkpoint(d)
    return {
        "parquet": dataset_file(d).read_bytes(),
        "onnx": onnx_model(bias=False),
        "safetensors": (ck / "model.safetensors").read_bytes(),
        "config": (ck / "config.json").read_bytes(),
        "readme": (ck / "README.md").read_bytes(),
        "modelpy": model_file(d).read_bytes(),
    }


# -- reference readers: is a damaged file really bad? ----------------------------------------------
def _parquet_bad(data: bytes, tmp: Path) -> bool:
    import pyarrow.parquet as pq

    p = tmp / "oracle.parquet"
    p.write_bytes(data)
    try:
        md = pq.read_schema(p).metadata or {}
        pq.read_table(p, page_checksum_verification=True)
        ok_md = all(md.get(k) == v for k, v in _PARQUET_MD.items())
    except Exception:  # noqa: BLE001 - any refusal by the reference reader makes it a bad file
        return True
    return not ok_md


_PARQUET_MD: dict[bytes, bytes] = {}


def _onnx_bad(data: bytes, tmp: Path) -> bool:
    import onnx

    try:
        m = onnx.load_from_string(data)
        onnx.checker.check_model(m, full_check=True)
    except Exception:  # noqa: BLE001
        return True
    return False


def _safetensors_bad(data: bytes, tmp: Path) -> bool:
    import safetensors.torch

    try:
        t = safetensors.torch.load(data)
    except Exception:  # noqa: BLE001
        return True
    return set(t) != {"coef"} or tuple(t["coef"].shape) != (2,)


def _json_bad(data: bytes, tmp: Path) -> bool:
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return True
    return False


ORACLES = {"parquet": _parquet_bad, "onnx": _onnx_bad, "safetensors": _safetensors_bad, "config": _json_bad}


def _damage(rng: random.Random, data: bytes, how: str) -> bytes:
    if how == "truncate":
        return data[: rng.randrange(0, len(data))]
    if how == "flip":
        b = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 8))):
            pos = rng.randrange(len(b))
            b[pos] ^= 1 << rng.randrange(8)
        return bytes(b)
    if how == "garbage":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
    if how == "empty":
        return b""
    raise AssertionError(how)


# -- the generated cases ----------------------------------------------------------------------------
def _file_cases() -> list[tuple[str, str, str, int]]:
    """(kind, how, command, index) for damaged-file cases (bytes drawn lazily, seeded by the id)."""
    out = []
    hows = ["truncate"] * 4 + ["flip"] * 5 + ["garbage", "empty"]
    commands = {
        "parquet": ["show", "show-row", "draw-row", "convert-append"],
        "onnx": ["convert", "show", "predict"],
        "safetensors": ["predict", "evaluate"],
        "config": ["predict", "evaluate"],
    }
    for kind, cmds in commands.items():
        for cmd in cmds:
            for i, how in enumerate(hows):
                out.append((kind, how, cmd, i))
    return out


def _argv_for(kind: str, cmd: str) -> tuple[list[str], dict[str, str]]:
    """argv and the pristine files placed next to the damaged one (``bad`` is the damaged file)."""
    if kind == "parquet":
        return {
            "show": (["show", "{d}/bad.parquet"], {}),
            "show-row": (["show", "{d}/bad.parquet", "--row", "1"], {}),
            "draw-row": (["draw", "{d}/bad.parquet", "--row", "0", "-o", "{d}/g.dot"], {}),
            "convert-append": (["convert", "{d}/m.onnx", "-o", "{d}/bad.parquet", "--append"], {"m.onnx": "onnx"}),
        }[cmd]
    if kind == "onnx":
        return {
            "convert": (["convert", "{d}/bad.onnx", "-o", "{d}/out.parquet"], {}),
            "show": (["show", "{d}/bad.onnx"], {}),
            "predict": (["predict", "{d}/ck", "{d}/bad.onnx"], {"ck/model.safetensors": "safetensors", "ck/config.json": "config"}),
        }[cmd]
    ck_files = {"ck/README.md": "readme", "m.onnx": "onnx"}
    ck_files["ck/config.json" if kind == "safetensors" else "ck/model.safetensors"] = "config" if kind == "safetensors" else "safetensors"
    if cmd == "predict":
        return ["predict", "{d}/ck", "{d}/m.onnx"], ck_files
    return ["evaluate", "{d}/ck", "--target", "nb201", "--out", "{d}/ev", "--root", "{d}/root", "--quiet"], ck_files


_BAD_NAME = {"parquet": "bad.parquet", "onnx": "bad.onnx", "safetensors": "ck/model.safetensors", "config": "ck/config.json"}

# every numeric option of every command, with values it must refuse
_COUNTS = [
    ("datasets build nb201", "--limit", 0), ("datasets build nb201", "--workers", 1),
    ("train flops --source nb201", "--epochs", 0), ("train flops --source nb201", "--max-train", 0),
    ("train flops --source nb201", "--seed", 0), ("train flops --source nb201", "--input-size", 0),
    ("evaluate flops --target nb201", "--shots", 0), ("evaluate flops --target nb201", "--seeds", 1),
    ("evaluate flops --target nb201", "--max-eval", 0), ("evaluate flops --target nb201", "--max-train", 0),
    ("evaluate flops --target nb201", "--epochs", 0), ("evaluate flops --target nb201", "--fine-tune-epochs", 0),
    ("evaluate flops --target nb201", "--sample-seed", 0), ("evaluate flops --target nb201", "--input-size", 0),
    ("show {d}/ds.parquet", "--row", 0), ("draw {d}/ds.parquet -o {d}/g.dot", "--row", 0),
]
_BAD_INTS = ["abc", "1.5", "", "1e3", "99999999999999999999", "0x10", "nan", "--", "٣"]
_BAD_FLOATS = ["-0.1", "1", "1.5", "nan", "inf", "abc", ""]
_BAD_SHAPES = ["3,x,32", "3,,32", "-3,32,32", "0,8,8", "99999999999,1,1", "3,20000,20000", "3;32;32", "3,32,32,1,1,1", "1e3,8,8"]


def _cases() -> list[Case]:
    cases: list[Case] = []
    for kind, how, cmd, i in _file_cases():
        argv, files = _argv_for(kind, cmd)
        files = {**files, _BAD_NAME[kind]: f"damaged:{kind}:{how}"}
        loader = _LOADERS[kind]
        cases.append(Case(f"{kind}-{how}{i}-{cmd}", argv, files, loader))
    for cmd, opt, minimum in _COUNTS:
        base = cmd.split()
        bad = [*_BAD_INTS, str(minimum - 1), str(minimum - 7)]
        for v in bad:
            extra = [] if base[0] in ("show", "draw") else ["--root", "{d}/root"]
            cases.append(Case(f"count{opt}-{base[0]}-{v or 'empty'}", [*base, f"{opt}={v}", *extra], {"ds.parquet": "parquet"},
                              expect=opt))
    for v in _BAD_FLOATS:
        cases.append(Case(f"valfrac-{v or 'empty'}", ["train", "flops", "--source", "nb201", f"--val-frac={v}", "--root", "{d}/root"],
                          expect="--val-frac"))
    for s in _BAD_SHAPES:
        for cmd in (["show", "{d}/models.py:small"], ["convert", "{d}/models.py:small", "-o", "{d}/o.parquet"],
                    ["draw", "{d}/models.py:small", "-o", "{d}/g.png"], ["predict", "{d}/ck", "{d}/models.py:small"]):
            cases.append(Case(f"shape-{cmd[0]}-{s}", [*cmd, f"--input-shape={s}"],
                              {"models.py": "modelpy", "ck/model.safetensors": "safetensors", "ck/config.json": "config"},
                              expect="input shape"))
    cases += _path_cases()
    return cases


def _path_cases() -> list[Case]:
    ck = {"ck/model.safetensors": "safetensors", "ck/config.json": "config", "ck/README.md": "readme"}
    user = {"mine/notes.txt": b"my notes", "mine.parquet": b"not napbench", "mine.png": b"\x89PNG my photo"}
    src = {"m.onnx": "onnx"}
    ro = READ_ONLY_DIR
    table = [
        # outputs that are folders, someone else's files, inside a file, on a read-only file system
        ("convert-out-folder", ["convert", "{d}/m.onnx", "-o", "{d}/mine"], src),
        ("convert-out-folder-parquet", ["convert", "{d}/m.onnx", "-o", "{d}/dir.parquet"], {**src, "dir.parquet/x": b"x"}),
        ("convert-out-userfile", ["convert", "{d}/m.onnx", "-o", "{d}/mine.parquet"], src),
        ("convert-out-userfile-append", ["convert", "{d}/m.onnx", "-o", "{d}/mine.parquet", "--append"], src),
        ("convert-out-in-file", ["convert", "{d}/m.onnx", "-o", "{d}/m.onnx/x.parquet"], src),
        ("convert-out-readonly", ["convert", "{d}/m.onnx", "-o", f"{ro}/napbench-fuzz.parquet"], src),
        ("convert-out-suffix", ["convert", "{d}/m.onnx", "-o", "{d}/out.csv"], src),
        ("draw-out-folder", ["draw", "{d}/m.onnx", "-o", "{d}/dir.png"], {**src, "dir.png/x": b"x"}),
        ("draw-out-userfile", ["draw", "{d}/m.onnx", "-o", "{d}/mine.png"], src),
        ("draw-out-readonly", ["draw", "{d}/m.onnx", "-o", f"{ro}/napbench-fuzz.svg"], src),
        ("draw-out-suffix", ["draw", "{d}/m.onnx", "-o", "{d}/g.jpg"], src),
        ("train-out-userfolder", ["train", "flops", "--source", "nb201", "--out", "{d}/mine", "--root", "{d}/root"], {}),
        ("train-out-userfile", ["train", "flops", "--source", "nb201", "--out", "{d}/mine.parquet", "--root", "{d}/root"], {}),
        ("train-out-readonly", ["train", "flops", "--source", "nb201", "--out", f"{ro}/napbench-ck", "--root", "{d}/root"], {}),
        ("evaluate-out-file", ["evaluate", "flops", "--target", "nb201", "--out", "{d}/mine.parquet", "--root", "{d}/root"], {}),
        ("evaluate-out-userfolder", ["evaluate", "flops", "--target", "nb201", "--out", "{d}/mine", "--root", "{d}/root"], {}),
        ("evaluate-out-readonly", ["evaluate", "flops", "--target", "nb201", "--out", f"{ro}/napbench-ev", "--root", "{d}/root"], {}),
        ("build-root-file", ["datasets", "build", "nb201", "--limit", "3", "--root", "{d}/mine.parquet", "--quiet"], {}),
        ("build-root-readonly", ["datasets", "build", "nb201", "--limit", "3", "--root", ro, "--quiet"], {}),
        ("build-mirror-missing", ["datasets", "build", "nb201", "--limit", "3", "--root", "{d}/r", "--mirror", "{d}/nomirror"], {}),
        ("build-unknown-family", ["datasets", "build", "nb999", "--root", "{d}/r"], {}),
        ("build-nothing", ["datasets", "build", "--root", "{d}/r"], {}),
        ("dshow-root-file", ["datasets", "show", "nb201", "--root", "{d}/mine.parquet"], {}),
        # inputs that are missing, folders, the wrong kind of file
        ("show-missing-parquet", ["show", "{d}/nope.parquet"], {}),
        ("show-folder-parquet", ["show", "{d}/dir.parquet"], {"dir.parquet/x": b"x"}),
        ("show-userfile-parquet", ["show", "{d}/mine.parquet"], {}),
        ("show-row-range", ["show", "{d}/ds.parquet", "--row", "2"], {"ds.parquet": "parquet"}),
        ("show-missing-onnx", ["show", "{d}/nope.onnx"], {}),
        ("show-folder-model", ["show", "{d}/mine"], {}),
        ("show-folder-onnx", ["show", "{d}/dir.onnx"], {"dir.onnx/x": b"x"}),
        ("show-garbage-keras", ["show", "{d}/m.keras"], {"m.keras": b"PK not really a zip"}),
        ("show-garbage-h5", ["show", "{d}/m.h5"], {"m.h5": b"\x00" * 64}),
        ("show-missing-module", ["show", "no_such_module_xyz:fn", "--input-shape", "3,8,8"], {}),
        ("show-missing-pyfile", ["show", "{d}/nope.py:fn", "--input-shape", "3,8,8"], {}),
        ("show-missing-attr", ["show", "{d}/models.py:nothing", "--input-shape", "3,8,8"], {"models.py": "modelpy"}),
        ("show-no-shape", ["show", "{d}/models.py:small"], {"models.py": "modelpy"}),
        ("predict-missing-ck", ["predict", "{d}/nope", "{d}/m.onnx"], src),
        ("predict-hub-looking", ["predict", "someowner/somerepo", "{d}/m.onnx"], src),
        ("predict-file-ck", ["predict", "{d}/m.onnx", "{d}/m.onnx"], src),
        ("predict-userfolder-ck", ["predict", "{d}/mine", "{d}/m.onnx"], src),
        ("predict-no-weights", ["predict", "{d}/ck2", "{d}/m.onnx"], {**src, "ck2/config.json": "config"}),
        ("predict-missing-model", ["predict", "{d}/ck", "{d}/nope.onnx"], ck),
        ("predict-folder-model", ["predict", "{d}/ck", "{d}/mine"], ck),
        ("evaluate-missing-ck", ["evaluate", "{d}/nope", "--target", "nb201", "--out", "{d}/ev"], {}),
        ("evaluate-hub-looking", ["evaluate", "someowner/somerepo", "--target", "nb201", "--out", "{d}/ev"], {}),
        ("evaluate-no-target", ["evaluate", "flops", "--out", "{d}/ev", "--root", "{d}/root"], {}),
        ("evaluate-params-missing", ["evaluate", "flops", "--target", "nb201", "--params", "{d}/nope.yaml", "--out", "{d}/ev"], {}),
        ("evaluate-params-garbage", ["evaluate", "flops", "--target", "nb201", "--params", "{d}/p.yaml", "--out", "{d}/ev"],
         {"p.yaml": b"evaluate: [unclosed"}),
        ("train-unknown-predictor", ["train", "nosuch", "--source", "nb201", "--root", "{d}/root"], {}),
        ("train-unknown-family", ["train", "flops", "--source", "nb999", "--root", "{d}/root"], {}),
        ("usage-no-command", [], {}),
        ("usage-unknown-command", ["frobnicate"], {}),
        ("usage-unknown-flag", ["show", "{d}/m.onnx", "--frobnicate"], src),
        ("usage-missing-arg", ["convert", "{d}/m.onnx"], src),
    ]
    base = {**user}
    return [Case(f"path-{name}", argv, {**base, **files}) for name, argv, files in table]


# -- loaders ------------------------------------------------------------------------------------------
def _load_parquet(d: Path) -> object:
    from napbench.conversion import read_graphs
    from napbench.datasets import load_file

    try:
        read_graphs(d / "bad.parquet")
    finally:
        load_file(d / "bad.parquet")
    return None


def _load_onnx(d: Path) -> object:
    from napbench.conversion import from_onnx

    return from_onnx(d / "bad.onnx")


def _load_ck(d: Path) -> object:
    from napbench.zoo import load

    return load(d / "ck")


_LOADERS = {"parquet": _load_parquet, "onnx": _load_onnx, "safetensors": _load_ck, "config": _load_ck}

CASES = _cases()


def _materialise(case: Case, d: Path, pristine: dict, tmp: Path) -> None:
    for name, spec in case.files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, bytes):
            data = spec
        elif spec.startswith("damaged:"):
            _, kind, how = spec.split(":")
            rng = random.Random(f"{SEED}:{case.id}")
            for _ in range(200):
                data = _damage(rng, pristine[kind], how)
                if data != pristine[kind] and ORACLES[kind](data, tmp):
                    break
            else:  # pragma: no cover - the generator could not damage this file
                raise AssertionError(f"{case.id}: no damaged variant found")
        else:
            data = pristine[spec]
        p.write_bytes(data)
    (d / "mine").mkdir(exist_ok=True)
    (d / "mine" / "notes.txt").write_bytes(b"my notes")


def test_fuzz_pristine_inputs_pass_the_oracles(pristine, tmp_path) -> None:
    for kind, oracle in ORACLES.items():
        if kind == "parquet":
            continue  # needs _PARQUET_MD, filled from the pristine file itself
        assert not oracle(pristine[kind], tmp_path), kind


def test_fuzz_case_count() -> None:
    assert len(CASES) >= 200, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz(case: Case, pristine, tmp_path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    if not _PARQUET_MD:
        src = tmp_path / "pristine.parquet"
        src.write_bytes(pristine["parquet"])
        _PARQUET_MD.update({k: v for k, v in (pq.read_schema(src).metadata or {}).items() if k.startswith(b"napbench.")})
        src.unlink()
    oracle_tmp = tmp_path / "oracle"
    oracle_tmp.mkdir()
    d = tmp_path / "case"
    d.mkdir()
    _materialise(case, d, pristine, oracle_tmp)
    shutil.rmtree(oracle_tmp)
    monkeypatch.chdir(d)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # no case may get as far as building a family: without a mirror such a slip fails fast (and the
    # expected-message checks below catch it) instead of building 15,625 networks
    monkeypatch.setenv("NAPBENCH_MIRROR", str(tmp_path / "no-mirror"))
    before = snapshot(tmp_path)
    argv = [a.replace("{d}", str(d)) for a in case.argv]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, out, err = run_cli(argv)
    lines = err.strip().splitlines()
    assert code == 2, (argv, code, out[-300:], err[-600:])
    assert len(lines) == 1, (argv, lines)
    assert lines[0].startswith("napbench: error: ") and "internal error" not in lines[0], (argv, lines[0])
    assert "Traceback" not in err and "Traceback" not in out
    assert case.expect in lines[0], (argv, lines[0])
    assert snapshot(tmp_path) == before, argv  # nothing created, nothing changed
    if case.loader is not None:
        with pytest.raises(NapbenchError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.loader(d)
        assert snapshot(tmp_path) == before
