"""Text tower: a ``transformers`` ``BertModel`` (always with its pooler, so checkpoints of both pooling modes have
the same keys) and the global text embedding (masked mean of the last hidden states, or ``pooler_output``).

State-dict layout: the ``BertModel`` is ``encoder``, so under ``PlipModel`` its keys are
``text_tower.encoder.embeddings.*``, ``text_tower.encoder.encoder.layer.N.*``, ``text_tower.encoder.pooler.*``:
the official PLIP ``TxtEncoder_state_dict`` (a ``Textual_encoder`` whose BertModel is also ``encoder``) loads under
``text_tower.`` once its old ``encoder.embeddings.position_ids`` buffer is dropped.
"""
from __future__ import annotations

import json
import logging
import os

import torch
from torch import nn

from plip_runtime.weights import bert_uncased_vocab

from .config import TextTowerConfig

_log = logging.getLogger(__name__)


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, L, D) over the positions where ``attention_mask`` (B, L) is 1."""
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class BertTextTower(nn.Module):
    def __init__(self, cfg: TextTowerConfig, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.pooling = cfg.pooling
        self.hidden_size = int(encoder.config.hidden_size)
        self.vocab_size = int(encoder.config.vocab_size)
        self.max_length = cfg.max_length
        n_layers = len(encoder.encoder.layer)
        if cfg.max_length > encoder.config.max_position_embeddings:
            raise ValueError(f"TextTowerConfig.max_length: {cfg.max_length} exceeds the model's "
                             f"max_position_embeddings {encoder.config.max_position_embeddings}")
        if cfg.trainable_layers == "all":
            for p in encoder.parameters():
                p.requires_grad_(True)
        else:
            bad = [i for i in cfg.trainable_layers if i >= n_layers]
            if bad:
                raise ValueError(f"TextTowerConfig.trainable_layers: the text encoder has {n_layers} layers "
                                 f"(indices 0..{n_layers - 1}), got {list(cfg.trainable_layers)}")
            for p in encoder.parameters():
                p.requires_grad_(False)
            for i in cfg.trainable_layers:
                for p in encoder.encoder.layer[i].parameters():
                    p.requires_grad_(True)
        # the pooler gets a gradient only when its output is the embedding (see TextTowerConfig.train_pooler)
        train_pooler = cfg.train_pooler and cfg.pooling == "pooler"
        for p in encoder.pooler.parameters():
            p.requires_grad_(train_pooler)

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The token embedding table (vocab_size x hidden), e.g. to tie a vocabulary prediction head."""
        return self.encoder.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(global (B, D), last hidden states (B, L, D))``."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state
        if self.pooling == "pooler":
            return out.pooler_output, hidden
        return masked_mean(hidden, attention_mask), hidden


def _bert_config(cfg: TextTowerConfig):
    from transformers import BertConfig

    d = cfg.pretrained_dir()
    if d is None:
        return BertConfig(**cfg.bert)
    _check_dir(cfg, d)
    bc = BertConfig.from_pretrained(d, local_files_only=True)
    for k, v in cfg.bert.items():  # dropouts only (validated)
        setattr(bc, k, v)
    return bc


def _check_dir(cfg: TextTowerConfig, d: str) -> None:
    if not os.path.isfile(os.path.join(d, "config.json")):
        raise ValueError(f"TextTowerConfig.pretrained: {d} is not a local Hugging Face model directory (no "
                         "config.json); give e.g. a bert-base-uncased directory, 'minilm-package' or null")


def _load_pretrained_bert(cfg: TextTowerConfig, d: str):
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    _check_dir(cfg, d)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model, info = BertModel.from_pretrained(d, config=_bert_config(cfg), local_files_only=True,
                                                add_pooling_layer=True, output_loading_info=True)
    except OSError as e:
        raise ValueError(f"TextTowerConfig.pretrained: cannot load a BERT model from {d}: {e}") from e
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    mismatched = info.get("mismatched_keys", [])
    if [k for k in missing if not k.startswith("pooler.")] or mismatched:
        raise ValueError(f"TextTowerConfig.pretrained: {d} does not hold a complete BERT encoder: missing "
                         f"{missing[:5]}, shape-mismatched {list(mismatched)[:5]}")
    if missing:
        _log.warning("text tower %s: no pooler weights, the pooler is randomly initialised", d)
    return model


def build_text_tower(cfg: TextTowerConfig, load_pretrained: bool = True) -> BertTextTower:
    """The text tower for ``cfg``; ``load_pretrained=False`` builds the architecture only (random init)."""
    from transformers import BertModel

    d = cfg.pretrained_dir()
    if d is not None and load_pretrained:
        encoder = _load_pretrained_bert(cfg, d)
    else:
        encoder = BertModel(_bert_config(cfg), add_pooling_layer=True)
    return BertTextTower(cfg, encoder)


def _vocab_source(cfg: TextTowerConfig) -> str:
    if cfg.tokenizer is not None:
        return cfg.tokenizer
    d = cfg.pretrained_dir()
    if d is not None and os.path.isfile(os.path.join(d, "vocab.txt")):
        return d
    return str(bert_uncased_vocab())  # the vocabulary shipped with plip_runtime: bert-base-uncased


def build_tokenizer(cfg: TextTowerConfig):
    """A fast WordPiece tokenizer (``transformers.BertTokenizerFast``; supports ``return_offsets_mapping``) from a
    local ``vocab.txt`` (see ``TextTowerConfig.tokenizer``); ``model_max_length`` = ``max_length``. No network."""
    from transformers import BertTokenizerFast

    src = _vocab_source(cfg)
    vocab_file = os.path.join(src, "vocab.txt") if os.path.isdir(src) else src
    if not os.path.isfile(vocab_file):
        raise ValueError(f"TextTowerConfig.tokenizer: no vocab file at {vocab_file} (give a vocab.txt file or a "
                         "directory holding one)")
    do_lower_case = True
    tok_cfg = os.path.join(os.path.dirname(vocab_file), "tokenizer_config.json")
    if os.path.isfile(tok_cfg):
        with open(tok_cfg) as f:
            do_lower_case = bool(json.load(f).get("do_lower_case", True))
    vocab: dict[str, int] = {}
    with open(vocab_file, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab.setdefault(line.rstrip("\n"), i)
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t not in vocab]
    if missing:
        raise ValueError(f"TextTowerConfig.tokenizer: {vocab_file} is not a BERT vocab (no {', '.join(missing)})")
    # transformers 5: the tokenizers-backed BertTokenizer(Fast) takes the vocab as a dict (a vocab_file kwarg would
    # be silently ignored)
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=do_lower_case, model_max_length=cfg.max_length)
    if len(tok) != len(vocab) or not tok.is_fast:
        raise RuntimeError(f"tokenizer from {vocab_file}: expected a fast tokenizer with {len(vocab)} tokens, got "
                           f"{len(tok)} (transformers API change?)")
    model_vocab = cfg.vocab_size()
    if model_vocab is not None and len(vocab) > model_vocab:
        raise ValueError(f"TextTowerConfig.tokenizer: {vocab_file} has {len(vocab)} tokens but the text model's "
                         f"vocab_size is {model_vocab}; set bert.vocab_size >= {len(vocab)}")
    return tok
