"""A fork server for ``test_crash_safety.py`` (run as a subprocess; not a test module).

It imports napbench once (imports only: no thread pool may exist before a fork), then for each JSON request read
from stdin forks a child that runs it -- the napbench CLI (``{"op": "cli", "argv": [...]}``)
or a loop of checkpoint saves (``{"op": "save_loop", "target": ..., "n": N}``) -- prints the
child's pid, waits for it and prints its wait status. The test kills the child with SIGKILL
at a seeded moment, exactly as ``kill -9`` of a ``napbench`` process would; forking saves
re-importing torch for every repetition.
"""

from __future__ import annotations

import json
import os
import sys


def _save_loop(target: str, n: int) -> int:
    import torch

    from napbench.zoo import get_predictor

    for i in range(1, n + 1):
        p = get_predictor("flops")
        p.coef = torch.tensor([float(i), 0.0], dtype=torch.float64)
        p.save_pretrained(target)
    return 0


def main() -> None:
    # nothing here may start a thread pool before fork (polars' would deadlock the children):
    # only imports; the children load the label table themselves
    import polars  # noqa: F401

    import napbench.datasets  # noqa: F401
    from napbench.cli import main as cli_main
    from napbench.zoo import get_predictor

    get_predictor("flops")
    print("ready", flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: run the request and leave without running parent cleanups
            code = 1
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # the child's own output must not mix with the protocol
            try:
                if req["op"] == "cli":
                    code = cli_main(req["argv"])
                else:
                    code = _save_loop(req["target"], int(req["n"]))
            finally:
                sys.stdout.flush()
                os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": status}), flush=True)


if __name__ == "__main__":
    main()
