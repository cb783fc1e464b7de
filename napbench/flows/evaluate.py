"""The ``evaluate`` flow: zero-shot and k-shot tables, metrics and plots of the trained checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from napbench.config import Config, load_config


def protocol_config(cfg: Config, *, progress: bool = False) -> Any:
    """The evaluation protocol options of ``cfg``."""
    from napbench.evaluation.protocols import ProtocolConfig

    ep = cfg.evaluate
    return ProtocolConfig(shots=ep.shots, seeds=ep.seeds, max_eval=ep.max_eval, max_train=ep.max_train,
                          sample_seed=ep.sample_seed, epochs=ep.epochs, fine_tune_epochs=ep.fine_tune_epochs,
                          zc_input_size=ep.zc_input_size, zc_batch_size=ep.zc_batch_size, root=ep.root or cfg.build.root,
                          mirror=ep.mirror, progress=progress, plots=ep.plots)


@task(name="evaluate-checkpoints")
def evaluate_checkpoints(checkpoints: dict[str, str], targets: list[str], out: str, cfg: Config,
                         progress: bool = False) -> str:
    """Load the checkpoints, evaluate them on ``targets``, write table.md/csv, metrics.json and plots to ``out``."""
    from napbench.evaluation import evaluate_transfer
    from napbench.zoo import load

    report = evaluate_transfer({name: load(path) for name, path in checkpoints.items()}, targets,
                               protocol_config(cfg, progress=progress), out=out)
    write_metrics(report, Path(cfg.pipeline.results) / "metrics.json")
    return report.to_markdown()


def write_metrics(report: Any, path: Path) -> Path:
    """``{family: {setting: {predictor: {srcc, kt, ndcg@10, ...}}}}`` (means) as JSON: DVC's metrics file."""
    import json

    from napbench._io import atomic_write_text

    out: dict[str, Any] = {}
    for r in report.summary()["results"]:
        out.setdefault(r["target"], {}).setdefault(r["setting"], {})[r["predictor"]] = {
            k: round(float(v), 6) for k, v in r["mean"].items()}
    return atomic_write_text(path, json.dumps(out, indent=2, sort_keys=True) + "\n")


def run_evaluate(cfg: Config, checkpoints: dict[str, str], *, progress: bool = False) -> str:
    """The body of :func:`evaluate`; returns the Markdown table."""
    targets = list(cfg.evaluate.targets or cfg.build.families)
    out = cfg.evaluate.out
    table = evaluate_checkpoints(checkpoints, targets, out, cfg, progress)
    get_run_logger().info("evaluated %s on %s: %s", ", ".join(checkpoints), ", ".join(targets), Path(out) / "table.md")
    return table


@flow(name="evaluate", log_prints=True)
def evaluate(params: str | None = None) -> str:
    """Evaluate the pipeline's checkpoints (``params``: a params.yaml path)."""
    from napbench.flows.train import checkpoint_dir

    cfg = load_config(params)
    return run_evaluate(cfg, {p: str(checkpoint_dir(cfg, p)) for p in cfg.pipeline.predictors})
