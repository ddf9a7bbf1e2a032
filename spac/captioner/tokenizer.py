"""The captioner's tokenizer: BERT-uncased WordPiece (default) or a local GPT-2 BPE, as config.

Sequences are ``prefix embeddings, t_1 ... t_n, END``: there is no start token (the prefix plays
that part, as in ClipCap). END is ``[SEP]`` for WordPiece and ``<|endoftext|>`` for GPT-2; padding
positions never reach the loss (lengths are kept next to the padded tensors).

A checkpoint carries its vocabulary (``vocab.txt``, or ``vocab.json`` + ``merges.txt``), so a
trained captioner never depends on where the tokenizer came from at training time.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from synth_pedes import file_sha256

from plip_runtime.weights import bert_uncased_vocab

from .config import CaptionerConfig

BERT_FILES = ("vocab.txt",)
GPT2_FILES = ("vocab.json", "merges.txt")


class CaptionTokenizer:
    """Text <-> token ids for the captioner, wrapping a ``transformers`` tokenizer."""

    def __init__(self, kind: str, files: dict[str, Path]):
        from transformers import BertTokenizer, GPT2Tokenizer

        self.kind, self.files = kind, files
        for name, path in files.items():
            if not path.is_file():
                raise ValueError(f"tokenizer file {path} ({name}) does not exist")
        if kind == "bert":
            # transformers v5: the argument is `vocab=`; `vocab_file=` silently builds an empty vocab.
            self.hf = BertTokenizer(vocab=str(files["vocab.txt"]), do_lower_case=True)
            self.eos_id, self.pad_id = self.hf.sep_token_id, self.hf.pad_token_id
            self.lowercase = True
        elif kind == "gpt2":
            vocab = json.loads(files["vocab.json"].read_text(encoding="utf-8"))
            merges = [tuple(ln.split(" ")) for ln in files["merges.txt"].read_text(encoding="utf-8").splitlines()
                      if ln and not ln.startswith("#version")]
            self.hf = GPT2Tokenizer(vocab=vocab, merges=merges)
            self.eos_id = self.hf.convert_tokens_to_ids("<|endoftext|>")
            self.pad_id = self.eos_id  # GPT-2 has no pad token; pads never reach the loss
            self.lowercase = False
        else:
            raise ValueError(f"unknown tokenizer kind {kind!r}")
        if self.vocab_size <= 5 or self.eos_id is None:  # 5: the placeholder vocab of a missing file
            raise ValueError(f"tokenizer files {sorted(str(p) for p in files.values())} give an unusable "
                             f"vocabulary ({self.vocab_size} entries)")

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: CaptionerConfig) -> "CaptionTokenizer":
        if cfg.tokenizer == "bert":
            path = Path(cfg.tokenizer_path) if cfg.tokenizer_path else bert_uncased_vocab()
            return cls("bert", {"vocab.txt": path / "vocab.txt" if path.is_dir() else path})
        root = Path(cfg.tokenizer_path)
        return cls("gpt2", {f: root / f for f in GPT2_FILES})

    @classmethod
    def from_directory(cls, kind: str, directory: str | os.PathLike) -> "CaptionTokenizer":
        """The vocabulary saved next to a checkpoint by :meth:`save`."""
        d = Path(directory)
        names = BERT_FILES if kind == "bert" else GPT2_FILES
        missing = [n for n in names if not (d / n).is_file()]
        if missing:
            raise ValueError(f"{d}: the checkpoint's vocabulary is incomplete: missing {missing} "
                             f"(a {kind!r} tokenizer needs {list(names)})")
        return cls(kind, {n: d / n for n in names})

    def save(self, directory: str | os.PathLike) -> list[str]:
        """Copy the vocabulary files into ``directory``; returns their names."""
        for name, path in self.files.items():
            target = Path(directory) / name
            if path.resolve() != target.resolve():
                shutil.copyfile(path, target)
        return list(self.files)

    # --- properties ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    @property
    def fingerprint(self) -> str:
        """sha256 over the vocabulary files (recorded in run.json)."""
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(name.encode() + file_sha256(self.files[name]).encode())
        return h.hexdigest()[:16]

    # --- text <-> ids -------------------------------------------------------------------------
    def encode(self, text: str, max_tokens: int) -> list[int]:
        """Token ids of ``text`` followed by END, truncated to ``max_tokens`` ids in all."""
        return self.encode_many([text], max_tokens)[0]

    def encode_many(self, texts: list[str], max_tokens: int) -> list[list[int]]:
        texts = [" ".join(t.split()) for t in texts]
        ids = self.hf(texts, add_special_tokens=False)["input_ids"] if texts else []
        return [x[: max_tokens - 1] + [self.eos_id] for x in ids]

    def decode(self, ids) -> str:
        """Text of ``ids`` (stops at END), with WordPiece's spaced punctuation put back together."""
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        if self.kind == "bert":
            return clean_text(self.hf.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True))
        return self.hf.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()


def clean_text(text: str) -> str:
    """Undo WordPiece spacing: "t - shirt" -> "t-shirt", "she ' s" -> "she's", "bag ." -> "bag."."""
    text = re.sub(r"\s*-\s*", "-", text)
    text = re.sub(r"\s*'\s*", "'", text)
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    return " ".join(text.split())


def sentence_case(text: str) -> str:
    """Capitalise the first letter of every sentence (uncased vocabularies generate lowercase)."""
    return re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
