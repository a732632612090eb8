"""Embedding similarity: the decontamination check that sees rephrased copies.

An n-gram check (:mod:`wcse.data.decontaminate`) misses a test problem rewritten in other words
with the same numbers (LMSYS's "rephrased samples", the way GSM8K train holds near-copies of test
problems). Where ``decontaminate.embedding.model`` names an encoder, each checked text is
embedded and flagged when its cosine similarity with an evaluation item reaches
``decontaminate.embedding.threshold``. Embeddings are the attention-masked mean of the model's
last hidden states, L2-normalised: the pooling of sentence-transformers encoders such as
``sentence-transformers/all-MiniLM-L6-v2``, loaded here with plain ``transformers`` (any
``AutoModel`` folder or hub id works; a causal LM's mean-pooled states are a weak stand-in).
The threshold is the model's: similarities of unrelated texts differ widely between encoders.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import AutoModel

from wcse.models import load_tokenizer, split_revision


@dataclass(frozen=True)
class Near:
    """The evaluation item most similar to a checked text, and their cosine similarity."""

    against: str
    similarity: float


class Embedder:
    """Mean-pooled, L2-normalised last hidden states of a transformers encoder, on the CPU or the
    first GPU."""

    def __init__(self, model: str, batch_size: int = 32, max_length: int = 256) -> None:
        self.batch_size, self.max_length = batch_size, max_length
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = load_tokenizer(model)  # decoder LMs ship without a pad token; padding is masked out anyway
        # Pads after the text: a causal LM's real tokens then keep their positions and never see a
        # pad, so a text embeds the same in any batch (left padding would shift its positions).
        self.tokenizer.padding_side = "right"
        repo, revision = split_revision(model)
        self.model = AutoModel.from_pretrained(repo, revision=revision).to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, texts: list[str], desc: str = "embed") -> torch.Tensor:
        """One unit-norm row per text (float32, on the CPU)."""
        rows = []
        for start in tqdm(range(0, len(texts), self.batch_size), desc=desc, unit="batch", leave=False):
            batch = self.tokenizer(
                texts[start : start + self.batch_size], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            rows.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
        return torch.cat(rows) if rows else torch.empty(0, 0)


class EmbeddingIndex:
    """The embeddings of every evaluation item, matched against batches of checked texts."""

    def __init__(self, items: Iterable[tuple[str, str]], embedder: Embedder, threshold: float, desc: str = "embed evaluation items") -> None:
        """``items``: (name, text) of every evaluation item."""
        if not -1 <= threshold <= 1:
            raise ValueError(f"decontaminate.embedding.threshold must be a cosine similarity in [-1, 1], got {threshold}")
        self.embedder, self.threshold = embedder, threshold
        pairs = list(items)
        self.names = [name for name, _ in pairs]
        self.vectors = embedder([text for _, text in pairs], desc=desc) if pairs else None

    def nearest(self, queries: torch.Tensor) -> list[Near | None]:
        """Each query embedding's most similar evaluation item (None: there are no evaluation
        items). Queries are embedded by the caller, once for every index they are checked against."""
        if self.vectors is None or not len(queries):
            return [None] * len(queries)
        best: list[Near | None] = []
        for start in range(0, len(queries), 1024):  # a (1024 x evaluation items) block of similarities at a time
            values, where = (queries[start : start + 1024] @ self.vectors.T).max(dim=1)
            best += [Near(self.names[i], round(v, 4)) for v, i in zip(values.tolist(), where.tolist(), strict=True)]
        return best

    def match(self, queries: torch.Tensor) -> list[Near | None]:
        """Each query's nearest evaluation item where their similarity reaches the threshold, else None."""
        return [near if near is not None and near.similarity >= self.threshold else None for near in self.nearest(queries)]
