"""Batched sampling with ``transformers.generate`` where each sample depends only on (prompt, seed).

HF's own sampling draws from one global RNG across the batch, so a sample would change with its
batch-mates, and the low budget's samples would not be a prefix of the high budget's. Here each
row gets its own ``torch.Generator`` and samples by the Gumbel-max trick: adding Gumbel noise to
the logits and taking the argmax (greedy ``generate``) is an exact draw from softmax(logits / T).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import groupby

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TopPLogitsWarper,
)

from wcse.records import Sample
from wcse.sampling.store import SampleRequest, canonical_params


class GumbelSampler(LogitsProcessor):
    """Turns greedy decoding into sampling at ``temperature`` (and ``top_p``), one seeded RNG per row.

    Row ``i`` draws one uniform vector per step from the generator seeded with ``seeds[i]``, so its
    tokens depend on its own logits and seed only.
    """

    def __init__(
        self, seeds: Sequence[int], temperature: float, top_p: float = 1.0, device: str | torch.device = "cpu"
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 to sample (got {temperature}); use greedy decoding for 0")
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.temperature = temperature
        self.top_p = TopPLogitsWarper(top_p) if top_p < 1.0 else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores / self.temperature
        if self.top_p is not None:
            scores = self.top_p(input_ids, scores)  # filtered logits become -inf
        uniform = torch.stack(
            [torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.generators]
        )
        uniform = uniform.clamp_(min=torch.finfo(uniform.dtype).tiny)  # rand may return exactly 0
        return scores - torch.log(-torch.log(uniform))


class HFSampler:
    """A local or hub causal LM sampled with ``generate``, batched by prompt length.

    ``temperature``, ``top_p`` and ``max_new_tokens`` are the defaults exposed as :attr:`params`
    for building requests; :meth:`generate` always honours each request's own params, because
    those are what its key records.
    """

    name = "hf"

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 64,
        max_new_tokens: int = 128,
        temperature: float = 0.7,
        top_p: float = 1.0,
        device: str = "auto",
        dtype: str = "float32",
    ) -> None:
        self.batch_size = batch_size
        self.params = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos) if isinstance(eos, list) else {eos}
        # Replace the checkpoint's generation defaults (repetition penalty, temperature, ...): a
        # sample must be fully described by its request's params, and generate merges these in.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def generate(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """One sample per request, in request order."""
        if not requests:
            return []  # the tokenizer rejects an empty batch
        prompt_ids = self.tokenizer([r.prompt for r in requests])["input_ids"]
        # Batches share params and have similar prompt lengths, to limit padding.
        order = sorted(range(len(requests)), key=lambda i: (canonical_params(requests[i].params), len(prompt_ids[i])))
        samples: list[Sample | None] = [None] * len(requests)
        for _, same_params in groupby(order, key=lambda i: canonical_params(requests[i].params)):
            group = list(same_params)
            for begin in range(0, len(group), self.batch_size):
                batch = group[begin : begin + self.batch_size]
                done = self._generate_batch([requests[i] for i in batch], [prompt_ids[i] for i in batch])
                for i, sample in zip(batch, done, strict=True):
                    samples[i] = sample
        return samples  # type: ignore[return-value]

    def _generate_batch(self, requests: list[SampleRequest], prompt_ids: list[list[int]]) -> list[Sample]:
        params = requests[0].params
        temperature, top_p = float(params["temperature"]), float(params["top_p"])
        inputs = self.tokenizer.pad({"input_ids": prompt_ids}, padding=True, return_tensors="pt").to(self.device)
        processors = LogitsProcessorList()
        if temperature > 0:
            processors.append(GumbelSampler([r.seed for r in requests], temperature, top_p, self.device))
        start = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=int(params["max_new_tokens"]),
                do_sample=False,
                logits_processor=processors,
            )
        seconds = (time.perf_counter() - start) / len(requests)
        new_ids = output[:, inputs["input_ids"].shape[1] :].tolist()
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        samples = []
        for request, ids, n_prompt in zip(requests, new_ids, prompt_tokens, strict=True):
            stop = next((pos for pos, token in enumerate(ids) if token in self.eos_ids), None)
            completion = ids if stop is None else ids[: stop + 1]
            samples.append(
                request.to_sample(
                    text=self.tokenizer.decode(completion, skip_special_tokens=True),
                    prompt_tokens=int(n_prompt),
                    generated_tokens=len(completion),
                    finish_reason="length" if stop is None else "stop",
                    backend=self.name,
                    seconds=seconds,
                )
            )
        return samples
