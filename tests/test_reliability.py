"""Issue 7: one regression test per finding (bad input and faults end in one line, exit 2, nothing destroyed).

Test names carry the finding number (``test_f01_...`` .. ``test_f15_...``). The crash-safety
half of finding 12 (``kill -9`` of a build) lives in ``test_crash_safety.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_inputs import (
    dataset_file,
    flops_checkpoint,
    kgnn_checkpoint,
    model_file,
    onnx_file,
    onnx_model,
    run_cli,
    snapshot,
)

from napbench.errors import NapbenchError, OutputPathError, SchemaError


def _one_error(err: str, *expect: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("napbench: error: "), lines
    assert "Traceback" not in err and "internal error" not in err, err
    for e in expect:
        assert e in lines[0], (e, lines[0])
    return lines[0]


# -- 1: train --out never replaces what is not a checkpoint --------------------------------
@pytest.mark.parametrize("kind", ["parquet_file", "user_folder"])
def test_f01_train_out_refuses_user_file_and_folder(tmp_path, kind) -> None:
    if kind == "parquet_file":
        target = dataset_file(tmp_path, "mine.parquet")
    else:
        target = tmp_path / "mine"
        target.mkdir()
        (target / "notes.txt").write_text("my thesis")
        (target / "sub").mkdir()
        (target / "sub" / "data.csv").write_text("a,b\n1,2\n")
    before = snapshot(tmp_path)
    code, _, err = run_cli(["train", "flops", "--source", "nb201", "--root", str(tmp_path / "root"), "--quiet",
                            "--out", str(target)])
    assert code == 2
    _one_error(err, str(target), "expected a new path or a napbench checkpoint folder")
    assert snapshot(tmp_path) == before


def test_f01_save_pretrained_replaces_only_checkpoints(tmp_path) -> None:
    from napbench.zoo import get_predictor, load

    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("x")
    with pytest.raises(OutputPathError, match="not a napbench checkpoint folder"):
        get_predictor("flops").save_pretrained(user)
    assert (user / "keep.txt").read_text() == "x" and sorted(p.name for p in user.iterdir()) == ["keep.txt"]
    ck = flops_checkpoint(tmp_path)
    p = get_predictor("params")
    p.save_pretrained(ck)  # a napbench checkpoint may be replaced
    assert load(ck).predictor_name == "params"
    assert [q.name for q in tmp_path.iterdir() if q.name.startswith(".")] == []


# -- 2: weight shapes are checked against input shapes --------------------------------------
def test_f02_onnx_conv_weight_not_fitting_input_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(onnx_model(in_ch=3, w_in=5))
    out = tmp_path / "out.parquet"
    code, _, err = run_cli(["convert", str(bad), "-o", str(out)])
    assert code == 2 and not out.exists()
    _one_error(err, "weight")


# -- 3: negative counts refused everywhere --------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["datasets", "build", "nb201", "--limit", "-5"],
        ["datasets", "build", "nb201", "--workers", "-1"],
        ["datasets", "build", "nb201", "--workers", "0"],
        ["train", "flops", "--source", "nb201", "--max-train", "-1"],
        ["train", "flops", "--source", "nb201", "--epochs", "-3"],
        ["train", "flops", "--source", "nb201", "--seed", "-1"],
        ["train", "flops", "--source", "nb201", "--val-frac", "-0.5"],
        ["evaluate", "flops", "--target", "nb201", "--seeds", "-2"],
        ["evaluate", "flops", "--target", "nb201", "--seeds", "0"],
        ["evaluate", "flops", "--target", "nb201", "--shots", "-1"],
        ["evaluate", "flops", "--target", "nb201", "--max-eval", "-1"],
        ["show", "x.parquet", "--row", "-1"],
    ],
)
def test_f03_negative_counts_refused(tmp_path, monkeypatch, argv) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli([*argv, "--root", str(tmp_path / "root")] if argv[0] != "show" else argv)
    assert code == 2
    _one_error(err, "expected")
    assert list(tmp_path.iterdir()) == []


def test_f03_build_api_refuses_negative_limit(tmp_path) -> None:
    from napbench.datasets import build

    with pytest.raises(NapbenchError, match="limit=-5"):
        build("nb201", tmp_path, limit=-5, progress=False)
    assert list(tmp_path.iterdir()) == []


# -- 4: malformed shapes ---------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["3,x,32", "3,,32", ",3,32", "3,32,", "3.0,32,32", "3,-4,32", "3,0,32", "", "abc"])
def test_f04_malformed_input_shape_is_a_shape_error(tmp_path, shape) -> None:
    spec = f"{model_file(tmp_path)}:small"
    code, _, err = run_cli(["show", spec, "--input-shape", shape])
    assert code == 2
    _one_error(err, "input shape", "expected C,H,W")


def test_f04_good_shapes_still_parse() -> None:
    from napbench._cli_types import parse_shape

    assert parse_shape("3,32,32") == (3, 32, 32) and parse_shape("3x32x32") == (3, 32, 32) and parse_shape(" 3, 8 ,8") == (3, 8, 8)


# -- 5: unknown schema version ---------------------------------------------------------------
def test_f05_unknown_schema_version_is_refused(tmp_path) -> None:
    from napbench.conversion import read_graphs

    p = dataset_file(tmp_path)
    t = pq.read_table(p)
    md = dict(t.schema.metadata)
    md[b"napbench.schema_version"] = b"99"
    pq.write_table(t.replace_schema_metadata(md), p)
    with pytest.raises(SchemaError, match="schema version 99; this napbench reads schema version 1"):
        read_graphs(p)
    code, _, err = run_cli(["show", str(p)])
    assert code == 2
    _one_error(err, "schema version 99", "reads schema version 1")


# -- 6: absurd shapes (CLI level) -------------------------------------------------------------
@pytest.mark.parametrize("shape", ["99999999999,1,1", "3,20000,20000", "1,1,1,1,1,1"])
def test_f06_absurd_input_shape_refused_up_front(tmp_path, shape) -> None:
    spec = f"{model_file(tmp_path)}:small"
    t0 = time.perf_counter()
    code, _, err = run_cli(["show", spec, "--input-shape", shape])
    assert code == 2 and time.perf_counter() - t0 < 5
    _one_error(err, "input shape")


# -- 7: -o is an existing folder ------------------------------------------------------------
@pytest.mark.parametrize("cmd,name", [("convert", "out.parquet"), ("draw", "out.png"), ("draw", "out.dot")])
def test_f07_output_that_is_a_folder(tmp_path, cmd, name) -> None:
    out = tmp_path / name
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    src = onnx_file(tmp_path, bias=False)
    before = snapshot(tmp_path)
    code, _, err = run_cli([cmd, str(src), "-o", str(out)])
    assert code == 2
    _one_error(err, "existing folder")
    assert snapshot(tmp_path) == before


def test_f07_draw_replaces_only_its_own_pictures(tmp_path) -> None:
    src = onnx_file(tmp_path, bias=False)
    user = tmp_path / "photo.dot"
    user.write_text("digraph mine {}")
    code, _, err = run_cli(["draw", str(src), "-o", str(user)])
    assert code == 2 and user.read_text() == "digraph mine {}"
    _one_error(err, "not a picture made by napbench")
    ours = tmp_path / "g.dot"
    assert run_cli(["draw", str(src), "-o", str(ours)])[0] == 0
    assert run_cli(["draw", str(src), "-o", str(ours)])[0] == 0  # a redraw replaces our own picture


# -- 8: Parquet without a column / non-JSON meta ----------------------------------------------
def _rewrite(p: Path, fn) -> None:
    t = pq.read_table(p)
    pq.write_table(fn(t).replace_schema_metadata(t.schema.metadata), p)


@pytest.mark.parametrize(
    "damage,row",
    [("no_nodes", None), ("no_nodes", "1"), ("no_flops", None), ("no_flops", "1"), ("meta_not_json", "1"),
     ("meta_not_object", "1")],
)
def test_f08_parquet_missing_column_or_bad_meta(tmp_path, damage, row) -> None:
    p = dataset_file(tmp_path)
    if damage.startswith("no_"):
        col = damage[3:]
        _rewrite(p, lambda t: t.drop_columns([col]))
    else:
        bad = "{not json" if damage == "meta_not_json" else "[1, 2]"
        _rewrite(p, lambda t: t.set_column(t.column_names.index("meta"), "meta", pa.array([bad] * t.num_rows)))
    code, _, err = run_cli(["show", str(p)] + (["--row", row] if row else []))
    assert code == 2
    _one_error(err, str(p) if damage.startswith("no_") else "'meta'")


# -- 9: broken checkpoints ------------------------------------------------------------------
class _Boom:
    def __reduce__(self):
        return (os.mkdir, (os.environ["NAPBENCH_TEST_PWNED"],))


@pytest.mark.parametrize("damage", ["truncated", "pickle", "empty", "config_mismatch", "config_list", "config_bad_json"])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_f09_broken_checkpoint_is_one_line(tmp_path, monkeypatch, damage, command) -> None:
    ck = kgnn_checkpoint(tmp_path) if damage == "config_mismatch" else flops_checkpoint(tmp_path)
    w = ck / "model.safetensors"
    pwned = tmp_path / "pwned"
    monkeypatch.setenv("NAPBENCH_TEST_PWNED", str(pwned))
    if damage == "truncated":
        w.write_bytes(w.read_bytes()[:-7])
    elif damage == "pickle":
        w.write_bytes(pickle.dumps({"coef": _Boom()}))
    elif damage == "empty":
        w.write_bytes(b"")
    elif damage == "config_mismatch":
        cfg = json.loads((ck / "config.json").read_text())
        cfg["hidden"] = 8
        (ck / "config.json").write_text(json.dumps(cfg))
    elif damage == "config_list":
        (ck / "config.json").write_text("[1, 2, 3]")
    else:
        (ck / "config.json").write_text('{"predictor": "flops",')
    model = onnx_file(tmp_path, bias=False)
    argv = ["predict", str(ck), str(model)] if command == "predict" else \
        ["evaluate", str(ck), "--target", "nb201", "--out", str(tmp_path / "ev"), "--root", str(tmp_path / "root")]
    code, _, err = run_cli(argv)
    assert code == 2
    line = _one_error(err)
    assert "size mismatch" not in line and len(line) < 400
    assert not pwned.exists()  # nothing was unpickled
    assert not (tmp_path / "ev").exists()


# -- 10: evaluate --out an existing file ------------------------------------------------------
@pytest.mark.parametrize("kind", ["file", "user_folder"])
def test_f10_evaluate_out_existing_file(tmp_path, kind) -> None:
    out = tmp_path / "results"
    if kind == "file":
        out.write_text("my results")
    else:
        out.mkdir()
        (out / "paper.tex").write_text("draft")
    before = snapshot(tmp_path)
    code, _, err = run_cli(["evaluate", "flops", "--target", "nb201", "--out", str(out), "--root", str(tmp_path / "r")])
    assert code == 2
    _one_error(err, str(out))
    assert snapshot(tmp_path) == before


# -- 11: from_torch with a negative dim ---------------------------------------------------------
def test_f11_cli_negative_dim_is_a_shape_error(tmp_path) -> None:
    code, _, err = run_cli(["show", f"{model_file(tmp_path)}:small", "--input-shape", "3,-4,32"])
    assert code == 2
    _one_error(err, "'-4' is not a positive integer")


def test_f11_from_torch_negative_dim_is_a_napbench_error() -> None:
    import torch

    from napbench.conversion import from_torch

    with pytest.raises(NapbenchError):
        from_torch(torch.nn.Conv2d(3, 4, 3), (3, -4, 32))


# -- 12: stale temp files of ours are cleaned (worker death: test_crash_safety.py) -------------
def test_f12_stale_temp_of_a_killed_writer_is_removed(tmp_path) -> None:
    from napbench.conversion import write_graphs
    from napbench.conversion.storage import read_graphs

    p = dataset_file(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=False, capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".{p.name}.{pid}.abc123.napbench-tmp.parquet"
    stale.write_bytes(b"half a parquet")
    alive = tmp_path / f".{p.name}.{os.getppid()}.abc124.napbench-tmp.parquet"  # a live writer's temp: kept
    alive.write_bytes(b"in progress")
    user = tmp_path / f".{p.name}.notes"  # not one of ours: kept
    user.write_text("mine")
    write_graphs(read_graphs(p), p)
    assert not stale.exists() and alive.exists() and user.exists()


def test_f12_pool_workers_arm_parent_death_signal() -> None:
    from napbench.datasets._build import _die_with_parent

    code = (
        "import os, ctypes, signal\n"
        "from napbench.datasets._build import _die_with_parent\n"
        "_die_with_parent(os.getppid())\n"
        "sig = ctypes.c_int(0)\n"
        "ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)\n"  # PR_GET_PDEATHSIG
        "print(sig.value == signal.SIGKILL)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "True", res.stderr
    assert _die_with_parent is not None


# -- 13: Hub-looking paths ---------------------------------------------------------------------
def test_f13_missing_owner_name_path_fails_at_once(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = onnx_file(tmp_path, bias=False)
    for argv, expect in (
        (["predict", "someowner/somerepo", str(model)], "hf://someowner/somerepo"),
        (["evaluate", "someowner/somerepo", "--target", "nb201", "--out", str(tmp_path / "ev")], "someowner/somerepo"),
        (["predict", str(tmp_path / "ck"), "someowner/somemodel"], "not found"),
    ):
        t0 = time.perf_counter()
        code, _, err = run_cli(argv)
        assert code == 2 and time.perf_counter() - t0 < 5
        _one_error(err, expect)


def test_f13_hub_ids_only_when_explicit_and_offline_respected(tmp_path, monkeypatch) -> None:
    from napbench.errors import NapbenchError
    from napbench.zoo import CheckpointError, load

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # offline, a Hub id is served from the cache only; not cached -> one line naming HF_HUB_OFFLINE, no network
    for spec in ("hf://someowner/somerepo",):
        with pytest.raises(NapbenchError, match="HF_HUB_OFFLINE"):
            load(spec)
    code, _, err = run_cli(["predict", "--hub", "someowner/somerepo", str(onnx_file(tmp_path, bias=False))])
    assert code == 2
    _one_error(err, "HF_HUB_OFFLINE")
    with pytest.raises(CheckpointError, match="malformed"):
        load("hf://not a repo")


# -- 14: noise ---------------------------------------------------------------------------------
def test_f14_garbage_keras_is_one_line_without_tensorflow(tmp_path) -> None:
    bad = tmp_path / "m.keras"
    bad.write_bytes(os.urandom(500))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = (
        "import sys\nfrom napbench.cli import main\nrc = main(sys.argv[1:])\n"
        "print('tf' if 'tensorflow' in sys.modules else 'no-tf')\nsys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, "show", str(bad)], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and res.stdout.strip() == "no-tf"
    _one_error(res.stderr, "not a .keras archive")


@pytest.mark.parametrize("argv", [["convert"], ["frobnicate"], ["datasets"], ["show", "a", "--bogus"], []])
def test_f14_argparse_errors_are_one_line(argv) -> None:
    code, out, err = run_cli(argv)
    assert code == 2 and out == ""
    line = _one_error(err)
    assert "usage:" not in line


def test_f14_warning_is_one_clear_line(tmp_path) -> None:
    src = onnx_file(tmp_path)  # conv with bias and no BN: the BN-folded warning
    code, out, err = run_cli(["convert", str(src), "-o", str(tmp_path / "o.parquet")])
    assert code == 0 and "wrote" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napbench: warning: ") and "folded" in lines[0], lines
    assert "sys.exit" not in err and "warnings.warn" not in err
    assert warnings.showwarning.__module__ == "warnings"  # restored after main()


def test_f14_console_script_warning_has_no_source_line(tmp_path) -> None:
    src = onnx_file(tmp_path)
    res = subprocess.run([sys.executable, "-m", "napbench.cli", "convert", str(src), "-o", str(tmp_path / "o.parquet")],
                         check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "entry()" not in res.stderr


def test_f14_internal_error_names_command_and_debug(monkeypatch) -> None:
    import napbench.datasets._cli as dcli

    def boom(args):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(dcli, "cmd_list", boom)
    code, _, err = run_cli(["datasets", "list"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert lines[0] == ("napbench: error: internal error in datasets list: ZeroDivisionError: division by zero; "
                        "rerun with NAPBENCH_DEBUG=1 for the traceback")


# -- 15: umask respected -------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_f15_outputs_respect_umask(tmp_path, umask) -> None:
    old = os.umask(umask)
    try:
        src = onnx_file(tmp_path)
        out = tmp_path / "o.parquet"
        assert run_cli(["convert", str(src), "-o", str(out)])[0] == 0
        ck = flops_checkpoint(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(ck.stat().st_mode) == 0o777 & ~umask
    for f in ck.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f
