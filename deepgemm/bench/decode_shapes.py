"""The decode suite's weight shapes: the non-MoE linear layers of public model configurations, sharded
the way tensor parallelism shards them, at decode batch sizes.

Each model is described by the fields of its published ``config.json`` that size its linear layers
(docs/decode-shapes.md cites them). A column-parallel layer (QKV, gate+up) splits its output N over the
TP ranks, a row-parallel one (attention output, down) its input K. Each layer is stored as one fused
weight ``[N, K]`` as serving engines store it (QKV fused, gate and up fused), so ``D = A · Wᵀ`` with
``A [M, K]`` the tokens of one decode step.
"""

from __future__ import annotations

from dataclasses import dataclass

# Decode batch sizes (tokens per step) the suite runs every shape at.
DECODE_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class Transformer:
    """The sizes a dense-attention transformer's linear layers follow from (``config.json`` names in
    brackets): ``hidden`` [hidden_size], ``intermediate`` [intermediate_size], ``heads``
    [num_attention_heads], ``kv_heads`` [num_key_value_heads], ``head_dim`` [head_dim, else hidden /
    heads]."""

    name: str
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int

    def layers(self, tp: int) -> dict[str, tuple[int, int]]:
        """``{layer: (N, K)}`` of one TP rank's shard. KV heads are replicated where there are fewer
        than ranks (each rank then keeps one)."""
        q = self.heads * self.head_dim // tp
        kv = max(self.kv_heads // tp, 1) * self.head_dim
        return {
            "qkv": (q + 2 * kv, self.hidden),
            "o": (self.hidden, self.heads * self.head_dim // tp),
            "gate_up": (2 * self.intermediate // tp, self.hidden),
            "down": (self.hidden, self.intermediate // tp),
        }


LLAMA3_8B = Transformer("Llama-3-8B", hidden=4096, intermediate=14336, heads=32, kv_heads=8, head_dim=128)
LLAMA3_70B = Transformer("Llama-3-70B", hidden=8192, intermediate=28672, heads=64, kv_heads=8, head_dim=128)
QWEN25_72B = Transformer("Qwen2.5-72B", hidden=8192, intermediate=29568, heads=64, kv_heads=8, head_dim=128)
QWEN3_32B = Transformer("Qwen3-32B", hidden=5120, intermediate=25600, heads=64, kv_heads=8, head_dim=128)
# Mixtral's experts are MoE (the grouped suites); its attention layers are dense.
MIXTRAL_8X22B = Transformer("Mixtral-8x22B", hidden=6144, intermediate=16384, heads=48, kv_heads=8,
                            head_dim=128)


def deepseek_v3_layers(tp: int) -> dict[str, tuple[int, int]]:
    """DeepSeek-V3's non-MoE layers (hidden 7168, q_lora_rank 1536, kv_lora_rank 512, 128 heads of
    qk_nope 128 + qk_rope 64 and v 128, dense-layer intermediate 18432) sharded over ``tp`` ranks; the
    low-rank down-projections (q_a, kv_a) are replicated. ``indexer_weights`` is DeepSeek-V3.2's
    indexer head-weight projection (index_n_heads 64 x hidden), also replicated."""
    return {
        "q_a": (1536, 7168),
        "kv_a": (512 + 64, 7168),
        "q_b": (128 * (128 + 64) // tp, 1536),
        "kv_b": (128 * (128 + 128) // tp, 512),
        "o": (7168, 128 * 128 // tp),
        "dense_gate_up": (2 * 18432 // tp, 7168),
        "dense_down": (7168, 18432 // tp),
        "indexer_weights": (64, 7168),
    }


# (model, TP degree, layers) the suite takes: every layer of a rank's shard, chosen so that together they
# cover TP 1/2/4/8, small and large N and K, K tails (3696 is not a multiple of 128) and N = 64.
_SELECTION = (
    (LLAMA3_8B, 1, ("qkv", "o", "gate_up", "down")),
    (LLAMA3_8B, 8, ("qkv", "down")),
    (LLAMA3_70B, 2, ("qkv", "down")),
    (LLAMA3_70B, 4, ("o", "gate_up")),
    (LLAMA3_70B, 8, ("qkv", "o", "gate_up", "down")),
    (QWEN25_72B, 8, ("gate_up", "down")),
    (QWEN3_32B, 1, ("qkv", "o")),
    (QWEN3_32B, 4, ("gate_up", "down")),
    (MIXTRAL_8X22B, 2, ("qkv", "o")),
)
_DEEPSEEK_SELECTION = (
    (1, ("q_a", "kv_a", "indexer_weights")),
    (8, ("q_b", "kv_b", "o", "dense_gate_up", "dense_down")),
)


def decode_weights() -> dict[tuple[int, int], tuple[str, ...]]:
    """``{(N, K): labels}`` of the suite's weights, in a fixed order; a label is ``model TPn layer``, and
    one shape may serve several (e.g. Llama-3-70B and Qwen2.5-72B share their attention shapes)."""
    weights: dict[tuple[int, int], list[str]] = {}
    for model, tp, names in _SELECTION:
        layers = model.layers(tp)
        for name in names:
            weights.setdefault(layers[name], []).append(f"{model.name} TP{tp} {name}")
    for tp, names in _DEEPSEEK_SELECTION:
        layers = deepseek_v3_layers(tp)
        for name in names:
            weights.setdefault(layers[name], []).append(f"DeepSeek-V3 TP{tp} {name}")
    return {nk: tuple(labels) for nk, labels in weights.items()}
