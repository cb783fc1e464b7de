"""Conversion speed of a ViT-B/16-size transformer through torch and ONNX (goal: under 5 s each).

Builds a ViT-B/16 (patch 16, 224x224, width 768, depth 12, 12 heads, MLP 3072, class token,
position embeddings; 86.6M parameters) written the usual way (fused qkv, pre-norm blocks),
then times ``from_torch`` (meta-device trace) and ``from_onnx`` of its ``torch.onnx.export``
(TorchScript exporter, constant folding off, weights included: a 330 MB file), each the best
of ``--repeat`` runs, and checks that params, MACs and the canonical hash agree with each
other and with ``sum(p.numel())`` / ``FlopCounterMode``. Export time is printed but not part
of the goal.

Usage: python benchmarks/convert_vit.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from napbench.conversion import from_onnx, from_torch


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn, self.norm2 = nn.LayerNorm(dim), _Attention(dim, heads), nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTB16(nn.Module):
    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 16, 16)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 197, dim) * 0.02)
        self.blocks = nn.Sequential(*(_Block(dim, heads) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    model = ViTB16().eval()
    shape = (3, 224, 224)
    n_params = sum(q.numel() for q in model.parameters())
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(1, *shape))
    macs = fc.get_total_flops() // 2
    t_torch, g = _best(lambda: from_torch(model, shape), args.repeat)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "vit_b16.onnx"
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(1, *shape),), str(path), dynamo=False, do_constant_folding=False)
        t_export = time.perf_counter() - t
        size = path.stat().st_size / 2**20
        t_onnx, o = _best(lambda: from_onnx(path), args.repeat)
    print(f"ViT-B/16: {n_params:,} params (torch), {macs / 1e9:.3f} GMACs (FlopCounterMode / 2)")
    print(f"from_torch: {t_torch:.2f} s  params {g.params:,}  MACs {g.flops / 1e9:.3f} G  nodes {len(g.nodes)}  "
          f"goal < 5 s: {'ok' if t_torch < 5 else 'MISSED'}")
    print(f"from_onnx:  {t_onnx:.2f} s  params {o.params:,}  MACs {o.flops / 1e9:.3f} G  nodes {len(o.nodes)}  "
          f"goal < 5 s: {'ok' if t_onnx < 5 else 'MISSED'}  (export {t_export:.1f} s, {size:.0f} MiB file)")
    print(f"agreement: params exact {g.params == o.params == n_params}; MACs exact {g.flops == o.flops == macs}; "
          f"one hash {g.canonical_hash == o.canonical_hash}")


if __name__ == "__main__":
    main()
