"""Reference networks with attention and channels-last blocks, written here (vocabulary 2.0).

Five small networks in the style of today's vision models, each written once in PyTorch the
way such models are usually written (hand-written attention with a fused qkv projection,
``F.scaled_dot_product_attention``, ``permute`` to channels-last, ``torch.roll``, learned
tokens and layer scales as ``nn.Parameter``), and once in Keras (``KERAS``: Keras layers, ``keras.ops`` and,
where Keras has no layer -- a class token, a relative-position bias table -- a small custom layer
that describes itself to napbench with ``napbench_graph``):

* ``vit``: patch-embedding conv, class token, position embeddings, two pre-norm blocks with
  multi-head attention and a GELU MLP, class-token head;
* ``convnext``: stem, 7x7 depthwise conv, channels-last LayerNorm, pointwise linears, layer
  scale, residual, mean-pool head;
* ``swin``: patch embedding, a windowed-attention block and a shifted-window block (cyclic
  ``roll``, window partition, relative-position bias table, attention mask computed in
  ``forward``), patch merging;
* ``mobilevit``: conv stem, MobileViT block (local conv, unfold to patches ``(B*P, N, C)``,
  transformer, fold back, fuse by concatenation);
* ``se_hybrid``: conv with squeeze-excite, then CBAM-style spatial attention (channel mean and
  max), then a token self-attention over the map with ``nn.MultiheadAttention``.

Every torch network takes a ``(3, 32, 32)`` input. TensorFlow/Keras is imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (3, 32, 32)
TOKEN_NETS = ["vit", "convnext", "swin", "mobilevit", "se_hybrid"]


class Attention(nn.Module):
    """Multi-head self-attention on ``(B, N, C)`` with one fused qkv projection (the timm way)."""

    def __init__(self, dim: int, heads: int, *, sdpa: bool = False) -> None:
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            if bias is not None:
                attn = attn + bias
            y = attn.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Sequential):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, *, sdpa: bool = False) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, sdpa=sdpa)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, dim: int = 32, depth: int = 2, heads: int = 4, patch: int = 8, img: int = 32, classes: int = 10,
                 *, sdpa: bool = False) -> None:
        super().__init__()
        n = (img // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, sdpa=sdpa) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, dim: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, 4)
        self.stem_norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.Sequential(ConvNeXtBlock(dim), ConvNeXtBlock(dim))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_norm(self.stem(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.blocks(x)
        return self.head(self.norm(x.mean((-2, -1))))


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    c = x.shape[-1]
    x = x.view(-1, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, wd, c)


class WindowAttention(nn.Module):
    """Swin window attention with a relative-position bias table."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.table[self.index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(-1, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.heads, n, n)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, res: int) -> None:
        super().__init__()
        self.window, self.shift, self.res = window, shift, res
        self.norm1, self.attn = nn.LayerNorm(dim), WindowAttention(dim, heads, window)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, 2 * dim)

    def _mask(self, device: torch.device) -> torch.Tensor | None:
        if not self.shift:
            return None
        r, w, s = self.res, self.window, self.shift
        region = torch.zeros(1, r, r, 1, device=device)
        cnt = 0
        for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
                region[:, hs, ws, :] = cnt
                cnt += 1
        win = _windows(region, w).squeeze(-1)
        diff = win.unsqueeze(1) - win.unsqueeze(2)
        return diff.ne(0).float() * -100.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r = self.res
        y = self.norm1(x).view(b, r, r, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = self.attn(_windows(y, self.window), self._mask(x.device))
        y = _unwindows(y, self.window, r, r)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class Swin(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2, window: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 4, 4)
        self.patch_norm = nn.LayerNorm(dim)
        self.blocks = nn.Sequential(SwinBlock(dim, heads, window, 0, 8), SwinBlock(dim, heads, window, 2, 8))
        self.merge_norm, self.reduction = nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm, self.head = nn.LayerNorm(2 * dim), nn.Linear(2 * dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_norm(self.patch_embed(x).flatten(2).transpose(1, 2))
        x = self.blocks(x)
        b, _, c = x.shape
        x = x.view(b, 8, 8, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1).view(b, -1, 4 * c)
        x = self.norm(self.reduction(self.merge_norm(x)))
        return self.head(x.mean(1))


class MobileViTBlock(nn.Module):
    def __init__(self, c: int, dim: int, patch: int = 2) -> None:
        super().__init__()
        self.patch = patch
        self.local = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.SiLU(),
                                   nn.Conv2d(c, dim, 1, bias=False))
        self.transformer = Block(dim, 2, sdpa=True)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Sequential(nn.Conv2d(dim, c, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU())
        self.fuse = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.local(x)
        b, d, h, w = y.shape
        p = self.patch
        # unfold: (B, D, H, W) -> (B * P, N, D) with P = p*p pixels per patch, N = patches
        y = y.reshape(b, d, h // p, p, w // p, p).permute(0, 3, 5, 2, 4, 1).reshape(b * p * p, (h // p) * (w // p), d)
        y = self.norm(self.transformer(y))
        y = y.reshape(b, p, p, h // p, w // p, d).permute(0, 5, 3, 1, 4, 2).reshape(b, d, h, w)
        return self.fuse(torch.cat([x, self.proj(y)], 1))


class MobileViT(nn.Module):
    def __init__(self, c: int = 16, dim: int = 24, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU())
        self.block = MobileViTBlock(c, dim)
        self.head = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.block(self.stem(x)), 1).flatten(1))


class SEHybrid(nn.Module):
    def __init__(self, c: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)
        self.attn = nn.MultiheadAttention(c, 2, batch_first=True)
        self.norm = nn.LayerNorm(c)
        self.head = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        s = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        x = x * torch.sigmoid(self.spatial(s))
        t = x.flatten(2).transpose(1, 2)
        t = self.norm(t + self.attn(t, t, t, need_weights=False)[0])
        return self.head(t.mean(1))


TORCH: dict[str, Callable[[], nn.Module]] = {
    "vit": ViT, "convnext": ConvNeXt, "swin": Swin, "mobilevit": MobileViT, "se_hybrid": SEHybrid,
}


def torch_net(name: str) -> nn.Module:
    """A fresh, seeded instance of reference network ``name``."""
    torch.manual_seed(0)
    return TORCH[name]().eval()


def torch_macs(module: nn.Module, shape: tuple[int, ...] = INPUT_SHAPE) -> int:
    """Multiply-adds by torch's ``FlopCounterMode`` (it counts 2 FLOPs per multiply-add).

    ``scaled_dot_product_attention`` runs on its math backend: the fused CPU kernel is not
    counted by ``FlopCounterMode``; the math backend's matmuls are.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # nn.MultiheadAttention's fused kernel is not counted either
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            module(torch.randn(1, *shape))
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return fc.get_total_flops() // 2


def torch_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- Keras twins ------------------------------------------------------------------------------------
def keras_convnext() -> Any:
    """The ConvNeXt-style network with Keras layers (LayerScale from keras.applications.convnext)."""
    import keras
    from keras.src.applications.convnext import LayerScale

    L = keras.layers
    inp = keras.Input((32, 32, 3))
    x = L.LayerNormalization(epsilon=1e-6)(L.Conv2D(16, 4, 4)(inp))
    for _ in range(2):
        y = L.DepthwiseConv2D(7, padding="same")(x)
        y = L.Dense(16)(L.Activation("gelu")(L.Dense(64)(L.LayerNormalization(epsilon=1e-6)(y))))
        x = L.Add()([x, LayerScale(1e-6, 16)(y)])
    x = L.LayerNormalization(epsilon=1e-6)(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, L.Dense(10)(x))


def _keras_token_layers() -> tuple[type, type]:
    """Keras has no class-token or position-embedding layer: the two custom layers a Keras ViT writes.

    Each describes itself to napbench with ``napbench_graph`` (its weight is a learned tensor, a
    ``param`` node), as the Keras frontend documents for custom layers with weights.
    """
    import keras

    from napbench.conversion.builder import tokens

    class ClassToken(keras.layers.Layer):
        """Prepends a learned class token to ``(B, N, C)`` tokens."""

        def build(self, input_shape: Any) -> None:
            self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="random_normal", name="token")

        def call(self, x: Any) -> Any:
            t = keras.ops.broadcast_to(self.token, (keras.ops.shape(x)[0], 1, x.shape[-1]))
            return keras.ops.concatenate([t, x], axis=1)

        def compute_output_shape(self, s: Any) -> Any:
            return (s[0], s[1] + 1, s[2])

        def napbench_graph(self, b: Any, inputs: list[int], *, name: str) -> int:
            c = int(self.token.shape[-1])
            t = b.param(tuple(self.token.shape), (c,), name=f"{name}/token")
            return b.add_node("concat", [t, inputs[0]], tokens(c, b.numel(inputs[0]) + c), name=name)

    class PositionEmbedding(keras.layers.Layer):
        """Adds a learned ``(1, N, C)`` position embedding."""

        def build(self, input_shape: Any) -> None:
            self.pos = self.add_weight(shape=(1, *input_shape[1:]), initializer="random_normal", name="pos")

        def call(self, x: Any) -> Any:
            return x + self.pos

        def napbench_graph(self, b: Any, inputs: list[int], *, name: str) -> int:
            w = tuple(int(d) for d in self.pos.shape)
            p = b.param(w, tokens(w[-1], w[-1] * w[-2]), name=f"{name}/pos")
            return b.elementwise("add", [inputs[0], p], name=name)

    return ClassToken, PositionEmbedding


def keras_vit(dim: int = 32, depth: int = 2, heads: int = 4, patch: int = 8) -> Any:
    """The ViT-style classifier with Keras layers: ``MultiHeadAttention`` (separate q/k/v projections, where
    the torch twin has one fused ``qkv``), exact GELU, a class-token head."""
    import keras

    L = keras.layers
    ClassToken, PositionEmbedding = _keras_token_layers()
    inp = keras.Input((32, 32, 3))
    x = L.Reshape((-1, dim))(L.Conv2D(dim, patch, patch)(inp))
    x = PositionEmbedding()(ClassToken()(x))
    for _ in range(depth):
        y = L.LayerNormalization(epsilon=1e-5)(x)
        x = L.Add()([x, L.MultiHeadAttention(heads, dim // heads)(y, y)])
        y = L.Dense(2 * dim, activation="gelu")(L.LayerNormalization(epsilon=1e-5)(x))
        x = L.Add()([x, L.Dense(dim)(y)])
    x = L.LayerNormalization(epsilon=1e-5)(x)
    return keras.Model(inp, L.Dense(10)(x[:, 0]))


def keras_se_hybrid(c: int = 16) -> Any:
    """The SE / CBAM / self-attention hybrid with Keras layers (``keras.ops`` for the channel mean and max)."""
    import keras

    L, ops = keras.layers, keras.ops
    inp = keras.Input((32, 32, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(c, 3, 2, padding="same", use_bias=False)(inp)))
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(c, 1, activation="sigmoid")(L.Conv2D(c // 4, 1, activation="relu")(s))
    x = L.Multiply()([x, s])
    m = L.Concatenate()([ops.mean(x, axis=-1, keepdims=True), ops.max(x, axis=-1, keepdims=True)])
    x = L.Multiply()([x, L.Conv2D(1, 7, padding="same", activation="sigmoid")(m)])
    t = L.Reshape((-1, c))(x)
    t = L.LayerNormalization(epsilon=1e-5)(L.Add()([t, L.MultiHeadAttention(2, c // 2)(t, t)]))
    return keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling1D()(t)))


def keras_mobilevit(c: int = 16, dim: int = 24, patch: int = 2) -> Any:
    """The MobileViT-style network with Keras layers: ``keras.ops.reshape``/``transpose`` unfold the map into
    ``(B*P, N, D)`` patches (the batch axis folds the P pixels of a patch) and fold them back."""
    import keras

    L, ops = keras.layers, keras.ops

    def cbs(x: Any, ch: int, k: int, s: int = 1) -> Any:
        return L.Activation("silu")(L.BatchNormalization(epsilon=1e-5)(L.Conv2D(ch, k, s, padding="same", use_bias=False)(x)))

    inp = keras.Input((32, 32, 3))
    x = cbs(inp, c, 3, 2)
    y = L.Conv2D(dim, 1, use_bias=False)(cbs(x, c, 3))
    h, p = 16, patch
    y = ops.reshape(ops.transpose(ops.reshape(y, (-1, h // p, p, h // p, p, dim)), (0, 2, 4, 1, 3, 5)), (-1, (h // p) ** 2, dim))
    z = L.LayerNormalization(epsilon=1e-5)(y)
    y = L.Add()([y, L.MultiHeadAttention(2, dim // 2)(z, z)])
    z = L.Dense(2 * dim, activation="gelu")(L.LayerNormalization(epsilon=1e-5)(y))
    y = L.LayerNormalization(epsilon=1e-5)(L.Add()([y, L.Dense(dim)(z)]))
    y = ops.reshape(ops.transpose(ops.reshape(y, (-1, p, p, h // p, h // p, dim)), (0, 3, 1, 4, 2, 5)), (-1, h, h, dim))
    x = cbs(L.Concatenate()([x, cbs(y, c, 1)]), c, 3)
    return keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))


def _keras_window_bias() -> type:
    """Swin's relative-position bias (a learned table gathered per window position pair) plus the shifted
    windows' constant mask, added to the attention scores: a custom layer (Keras has none)."""
    import keras
    import numpy as np

    from napbench.conversion.builder import tokens

    class WindowBias(keras.layers.Layer):
        def __init__(self, heads: int, window: int, mask: Any = None, **kw: Any) -> None:
            super().__init__(**kw)
            self.heads, self.window = heads, window
            self.mask = None if mask is None else np.asarray(mask, dtype="float32")[:, None]  # (nW, 1, N, N)
            c = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
            rel = (c[:, :, None] - c[:, None, :]).transpose(1, 2, 0) + window - 1
            self.index = (rel[..., 0] * (2 * window - 1) + rel[..., 1]).reshape(-1)

        def build(self, input_shape: Any) -> None:
            self.table = self.add_weight(shape=((2 * self.window - 1) ** 2, self.heads), initializer="random_normal", name="table")

        def call(self, attn: Any) -> Any:
            n = self.window**2
            bias = keras.ops.transpose(keras.ops.reshape(keras.ops.take(self.table, self.index, axis=0), (n, n, -1)), (2, 0, 1))
            attn = attn + bias[None]
            if self.mask is not None:
                nw = self.mask.shape[0]
                attn = keras.ops.reshape(keras.ops.reshape(attn, (-1, nw, self.heads, n, n)) + self.mask[None], (-1, self.heads, n, n))
            return attn

        def napbench_graph(self, b: Any, inputs: list[int], *, name: str) -> int:
            n = self.window**2  # the gathered bias (heads, N, N) is a view of the table; the mask is a constant
            p = b.param(tuple(self.table.shape), tokens(n, self.heads * n * n), name=f"{name}/table")
            return b.elementwise("add", [inputs[0], p], name=name)

    return WindowBias


def keras_swin(dim: int = 16, heads: int = 2, window: int = 4, res: int = 8) -> Any:
    """The Swin-style network with Keras layers: window partition with ``keras.ops.reshape``/``transpose`` (windows
    fold into the batch axis), cyclic shift with ``keras.ops.roll``, attention written with ``keras.ops.matmul``
    (Keras' MultiHeadAttention takes no additive bias), patch merging by strided slicing."""
    import keras
    import torch as _torch

    L, ops = keras.layers, keras.ops
    WindowBias = _keras_window_bias()
    w, d = window, dim // heads
    shifted = SwinBlock(dim, heads, window, 2, res)._mask(_torch.device("cpu")).numpy()  # the torch twin's mask

    def attention(y: Any, mask: Any) -> Any:
        def heads_of(t: Any) -> Any:
            return ops.transpose(ops.reshape(t, (-1, w * w, heads, d)), (0, 2, 1, 3))

        q, k, v = (heads_of(L.Dense(dim)(y)) for _ in range(3))
        a = WindowBias(heads, w, mask)(ops.matmul(q * d**-0.5, ops.transpose(k, (0, 1, 3, 2))))
        o = ops.reshape(ops.transpose(ops.matmul(L.Softmax()(a), v), (0, 2, 1, 3)), (-1, w * w, dim))
        return L.Dense(dim)(o)

    inp = keras.Input((32, 32, 3))
    x = L.LayerNormalization(epsilon=1e-5)(L.Conv2D(dim, 4, 4)(inp))
    for shift in (0, 2):
        y = L.LayerNormalization(epsilon=1e-5)(x)
        if shift:
            y = ops.roll(y, (-shift, -shift), (1, 2))
        y = ops.reshape(ops.transpose(ops.reshape(y, (-1, res // w, w, res // w, w, dim)), (0, 1, 3, 2, 4, 5)), (-1, w * w, dim))
        y = attention(y, shifted if shift else None)
        y = ops.reshape(ops.transpose(ops.reshape(y, (-1, res // w, res // w, w, w, dim)), (0, 1, 3, 2, 4, 5)), (-1, res, res, dim))
        if shift:
            y = ops.roll(y, (shift, shift), (1, 2))
        x = L.Add()([x, y])
        y = L.Dense(dim)(L.Dense(2 * dim, activation="gelu")(L.LayerNormalization(epsilon=1e-5)(x)))
        x = L.Add()([x, y])
    x = L.Concatenate()([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]])
    x = L.LayerNormalization(epsilon=1e-5)(L.Dense(2 * dim, use_bias=False)(L.LayerNormalization(epsilon=1e-5)(x)))
    return keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))


KERAS: dict[str, Callable[[], Any]] = {
    "vit": keras_vit, "convnext": keras_convnext, "swin": keras_swin, "mobilevit": keras_mobilevit, "se_hybrid": keras_se_hybrid,
}


if __name__ == "__main__":  # the agreement table of the README: python tests/conversion/token_nets.py
    import sys
    import warnings

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from onnx_export import torch_to_onnx

    from napbench.conversion import from_onnx, from_torch

    warnings.simplefilter("ignore")
    print("| network | torch params | CG params (torch / ONNX) | FlopCounterMode MACs | CG MACs (torch / ONNX) | one hash |")
    print("|---|---|---|---|---|---|")
    for name in TOKEN_NETS:
        m = torch_net(name)
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.rand(p.shape) + 0.5)
        g, o = from_torch(m, INPUT_SHAPE), from_onnx(torch_to_onnx(m, INPUT_SHAPE, keep_bn=True))
        print(f"| {name} | {torch_params(m):,} | {g.params:,} / {o.params:,} | {torch_macs(m):,} | {g.flops:,} / {o.flops:,} | "
              f"{'yes' if g.canonical_hash == o.canonical_hash else 'NO'} |")
