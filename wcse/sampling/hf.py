"""Batched sampling with ``transformers.generate`` where each sample depends only on (prompt, seed).

HF's own sampling draws from one global RNG across the batch, so a sample would change with its
batch-mates, and the low budget's samples would not be a prefix of the high budget's. Here each
row gets its own ``torch.Generator`` and samples by the Gumbel-max trick: adding Gumbel noise to
the logits and taking the argmax (greedy ``generate``) is an exact draw from softmax(logits / T).

Stop strings (``params["stop"]``) end each row of a batch on its own, by the rule vLLM applies and
the verifier re-applies (:func:`wcse.records.cut_at_stop`): the text ends before the stop string,
the token count runs through the tokens that completed it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import groupby

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TopPLogitsWarper,
)

from wcse import models
from wcse.records import Sample, cut_at_stop
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


class StopOnStrings(StoppingCriteria):
    """Per-row done flags: a row is done once its generated text holds one of ``stops``.

    It decodes the row's newest tokens and asks :func:`cut_at_stop`, the rule that then cuts the
    record, so the row stops exactly where its record says it did, and only generated text counts,
    as in vLLM. (transformers' ``StopStringCriteria`` matches token strings against the end of the
    whole sequence, prompt included, so a row could stop on a match its decoded text does not hold.)
    One token per byte of the longest stop string, plus one, covers any stop the newest token completes.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: Sequence[str], prompt_length: int) -> None:
        self.tokenizer, self.stops, self.prompt_length = tokenizer, list(stops), prompt_length
        self.window = max(len(stop.encode()) for stop in stops) + 1

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs: object) -> torch.BoolTensor:
        tails = input_ids[:, self.prompt_length :][:, -self.window :].tolist()
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        done = [cut_at_stop(text, self.stops)[1] is not None for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


class HFSampler:
    """A local or hub causal LM sampled with ``generate``, batched by prompt length and params.

    Decoding follows each request's own params (temperature, top_p, max_new_tokens, stop),
    because those are what its key records.
    """

    name = "hf"

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 64,
        device: str = "auto",
        dtype: str = "float32",
        attn_implementation: str | None = None,  # None: the model's safe default (wcse.models)
    ) -> None:
        self.batch_size = batch_size
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.tokenizer = models.load_tokenizer(model_path, padding_side="left")  # EOS pads where no pad token is
        self.model = models.load_causal_lm(
            model_path, attn_implementation=attn_implementation, dtype=getattr(torch, dtype),
            gpu_16bit=self.device.type == "cuda" and dtype in ("float16", "bfloat16"),
        )
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
        stops = params.get("stop") or []
        prompt_length = inputs["input_ids"].shape[1]
        criteria = StoppingCriteriaList([StopOnStrings(self.tokenizer, stops, prompt_length)] if stops else [])
        start = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=int(params["max_new_tokens"]),
                do_sample=False,
                logits_processor=processors,
                stopping_criteria=criteria,
            )
        seconds = (time.perf_counter() - start) / len(requests)
        new_ids = output[:, prompt_length:].tolist()
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        samples = []
        for request, ids, n_prompt in zip(requests, new_ids, prompt_tokens, strict=True):
            # A row that is done is padded to the batch's length: its own tokens end at its EOS or
            # at the one completing its stop string.
            eos = next((pos for pos, token in enumerate(ids) if token in self.eos_ids), None)
            completion = ids if eos is None else ids[: eos + 1]
            text, stop_string = cut_at_stop(self._decode(completion), stops)
            if stop_string is not None:
                completion = completion[: self._stop_length(completion, stops)]
                text, stop_string = cut_at_stop(self._decode(completion), stops)
            samples.append(
                request.to_sample(
                    text=text,
                    prompt_tokens=int(n_prompt),
                    generated_tokens=len(completion),
                    finish_reason="length" if eos is None and stop_string is None else "stop",
                    backend=self.name,
                    seconds=seconds,
                    stop_string=stop_string,
                )
            )
        return samples

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _stop_length(self, ids: list[int], stops: Sequence[str]) -> int:
        """The fewest of ``ids`` whose text holds a stop string (they do all together): the tokens
        the model generated up to the one completing it, as vLLM counts them. Binary search: the
        text of a longer prefix holds everything a shorter one's does."""
        low, high = 1, len(ids)
        while low < high:
            mid = (low + high) // 2
            if cut_at_stop(self._decode(ids[:mid]), stops)[1] is None:
                low = mid + 1
            else:
                high = mid
        return low
