"""Scoped process-wide torch settings stay correct when tasks run in threads at once."""

from __future__ import annotations

import threading

import torch

from napbench._scoped import seeded_torch, torch_threads


def test_concurrent_torch_threads_restore_the_process_value() -> None:
    before = torch.get_num_threads()
    inside = threading.Barrier(2)
    leave_first = threading.Event()
    seen: list[int] = []

    def first() -> None:
        with torch_threads(1):
            inside.wait()
            leave_first.wait()

    def second() -> None:
        with torch_threads(1):
            inside.wait()
            leave_first.set()  # the first block ends while this one still runs
            threading.Event().wait(0.05)
            seen.append(torch.get_num_threads())

    ts = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert seen == [1]  # the first block's exit did not restore the value under the second
    assert torch.get_num_threads() == before


def test_seeded_draws_are_reproducible_under_threads() -> None:
    def draw(seed: int, out: dict[int, torch.Tensor]) -> None:
        for _ in range(20):
            with seeded_torch(seed):
                out[seed] = torch.randn(64)

    ref = {}
    for s in (1, 2):
        with seeded_torch(s):
            ref[s] = torch.randn(64)
    got: dict[int, torch.Tensor] = {}
    ts = [threading.Thread(target=draw, args=(s, got)) for s in (1, 2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(torch.equal(got[s], ref[s]) for s in (1, 2))


def test_networks_built_from_a_graph_in_threads_equal_one_built_alone() -> None:
    # the executor draws a network's weights under seeded_torch: concurrent builds never interleave
    from concurrent.futures import ThreadPoolExecutor

    from napbench.conversion import from_torch, to_torch

    layers = [torch.nn.Flatten()] + [m for _ in range(6) for m in (torch.nn.LazyLinear(384), torch.nn.ReLU())]
    model = torch.nn.Sequential(*layers)
    model(torch.zeros(1, 3, 8, 8))
    graph = from_torch(model, (3, 8, 8))

    def weights() -> list[torch.Tensor]:
        return [p.detach().clone() for _ in range(8) for p in to_torch(graph, seed=3).parameters()]

    alone = weights()
    with ThreadPoolExecutor(4) as pool:
        for got in [f.result() for f in [pool.submit(weights) for _ in range(4)]]:
            assert all(torch.equal(a, b) for a, b in zip(alone, got))
