"""A vision-language model as SPAC's captioner, through transformers' ``AutoProcessor`` and
``AutoModelForImageTextToText`` (Qwen2-VL / Qwen2.5-VL, SmolVLM / Idefics3, LLaVA-style models, ...).

    from spac.vlm import VlmCaptioner, vlm_directory
    vlm = VlmCaptioner.load(vlm_directory("vlm:/models/Qwen2-VL-2B-Instruct"), device="cuda", styles=2)
    images = [vlm.prepare(b) for b in image_bytes]
    captions, instructions = vlm.caption(images, keys, vlm.options(precision="bf16"))
    phrases, scores = vlm.attributes(captions)

Every image gets one caption per style; each style has its own instruction (:mod:`.instructions`). The prompts
(images x styles) go through the processor's chat template and one batched ``generate`` call per chunk of
``batch_size`` prompts, left-padded. The model is loaded in fp32 and computes under autocast per
``VlmDecoding.precision``; ``local_files_only=True`` everywhere, so nothing is downloaded.

Batch invariance (measured on CPU, fp32, transformers 5.23, tiny LLaVA / Qwen2-VL / Idefics3 models): a prompt
batched with prompts of its own length gives bit-identical logits; left-padded next to a longer prompt, its
embeddings (image features and positions included) are still identical, but from the first decoder layer on its
values differ by about 1e-6: attention reduces over the padded key length (masked keys add exact zeros, but the
sums run in another order and blocking), with SDPA and with eager attention alike. Greedy captions are therefore
identical unless two best logits of a step lie within about 1e-5 of each other, where one token may flip and the
rest of the caption follow it; the tests (3 families, prompts of unequal length, 64 tokens) found no flip. Only
generating each prompt alone (``batch_size=1``) removes this; on a GPU, bf16/fp16 and TF32 make the
differences larger.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Sequence

import torch

from plip_runtime.device import autocast, resolve_device, resolve_precision

from .common import VlmBase, VlmDecoding, chat_messages, check_styles, clean_text

_log = logging.getLogger(__name__)
ENGINES = ("transformers", "vllm")


class VlmCaptioner(VlmBase):
    """A transformers VLM loaded from a local directory (see the module docstring)."""

    engine = "transformers"

    def __init__(self, directory, processor, model, device: str = "cpu", styles: int = 2, batch_size: int = 16):
        super().__init__(directory, styles, device)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size (prompts per generate call) must be >= 1, got {batch_size!r}")
        self.processor, self.model, self.batch_size = processor, model, batch_size
        self.tokenizer = getattr(processor, "tokenizer", processor)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str = "cpu", styles: int = 2, *, batch_size: int = 16,
             engine: str = "transformers", **engine_options):
        """Load the processor and model of a local model directory (``vlm_directory`` checks it first) on
        ``device``, in eval mode, with left padding. ``engine="vllm"`` returns a :class:`VllmCaptioner` instead
        (``engine_options`` go to it)."""
        from .model_dir import load_processor, vlm_directory

        check_styles(styles)  # before minutes of loading
        if engine not in ENGINES:
            raise ValueError(f"VLM engine {engine!r} is not one of {', '.join(ENGINES)}")
        if engine == "vllm":
            from .vllm_engine import VllmCaptioner

            return VllmCaptioner.load(directory, device=device, styles=styles, **engine_options)
        if engine_options:
            raise ValueError(f"unknown option(s) for the transformers engine: {sorted(engine_options)}")
        from transformers import AutoModelForImageTextToText

        path = vlm_directory(directory)
        device = str(resolve_device(device))
        processor = load_processor(path)
        model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        model.to(device).eval()
        return cls(path, processor, model, device=device, styles=styles, batch_size=batch_size)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # --- generation -----------------------------------------------------------------------------------------
    def prompt_text(self, instruction: str) -> str:
        """The chat-template text of one prompt (the processor expands its image placeholder)."""
        return self.processor.apply_chat_template(chat_messages(instruction), add_generation_prompt=True,
                                                  tokenize=False)

    def _generate_kwargs(self, opts: VlmDecoding) -> dict:
        """The decoding settings of ``opts``; the model's generation config keeps the rest (EOS, repetition)."""
        kwargs = {"max_new_tokens": opts.max_new_tokens, "num_beams": 1, "pad_token_id": self.tokenizer.pad_token_id}
        if opts.method == "nucleus":
            kwargs.update(do_sample=True, top_p=opts.top_p, temperature=opts.temperature, top_k=0)
        else:
            kwargs.update(do_sample=False)
        return kwargs

    def generate(self, pairs: Sequence[tuple], opts: VlmDecoding) -> list[str]:
        """One caption per (image, instruction) pair: one batched ``generate`` per chunk of ``batch_size``."""
        device = torch.device(self.device)
        precision = resolve_precision(opts.precision, device)
        kwargs = self._generate_kwargs(opts)
        out: list[str] = []
        # nucleus: the global RNGs seeded from opts.seed inside a fork, so the caller's random state is untouched
        seeded = torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []) \
            if opts.method == "nucleus" else contextlib.nullcontext()
        with seeded, torch.inference_mode():
            if opts.method == "nucleus":
                torch.manual_seed(opts.seed)
            for start in range(0, len(pairs), self.batch_size):
                chunk = pairs[start:start + self.batch_size]
                inputs = self.processor(text=[self.prompt_text(instr) for _, instr in chunk],
                                        images=[img for img, _ in chunk], padding=True, return_tensors="pt")
                inputs = inputs.to(device)
                with autocast(device, precision):
                    tokens = self.model.generate(**inputs, **kwargs)
                new = tokens[:, inputs["input_ids"].shape[1]:]  # left padding: every row's prompt ends here
                out += [clean_text(t) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return out

    def caption(self, images: Sequence, keys: Sequence[str], opts: VlmDecoding | None = None
                ) -> tuple[list[dict], list[dict]]:
        """Per image ``{style: caption}`` and ``{style: instruction}`` (instructions from ``opts.seed``)."""
        opts = opts or self.options()
        instructions, pairs = self._requests(images, keys, opts.seed)
        return self._regroup(self.generate(pairs, opts), len(images)), instructions


__all__ = ["VlmCaptioner", "ENGINES"]
