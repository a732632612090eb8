"""The toy model ladder: Llama-architecture configs and where the checkpoints live.

Attention heads are 64 wide (vLLM's CPU backend rejects narrower heads), so width grows by
adding heads: Student 1 head, WC 2, SE 4, with depth and MLP width chosen so that
P_SE / P_WC is about 3, like Gemma2 27B / 9B.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

HEAD_DIM = 64
MAX_POSITIONS = 256
SHIPPED = Path(__file__).parent / "checkpoints"


def llama_config(
    tokenizer: PreTrainedTokenizerBase, *, hidden_size: int, num_hidden_layers: int, intermediate_size: int
) -> dict[str, Any]:
    """A ``LlamaConfig`` dict (JSON-able: it travels to the training worker in its spec)."""
    if hidden_size % HEAD_DIM:
        raise ValueError(f"toy.models.*.hidden_size={hidden_size}: must be a multiple of {HEAD_DIM}")
    heads = hidden_size // HEAD_DIM
    return {
        "model_type": "llama",
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "head_dim": HEAD_DIM,
        "max_position_embeddings": MAX_POSITIONS,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def param_count(config: dict[str, Any]) -> int:
    """Exact parameter count of a tied-embedding Llama built from ``config`` (no weights needed)."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    attn = h * config["num_attention_heads"] * config["head_dim"] * 2 + h * kv * 2
    layer = attn + 3 * h * i + 2 * h  # q,o + k,v; gate, up, down; two RMSNorms
    return config["num_hidden_layers"] * layer + v * h + h  # + embeddings (tied) + final norm
