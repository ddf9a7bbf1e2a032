"""SPAC, the stylised prefix captioner (paper App. A.5.1, Fig. 6, Table 12).

    image (B, 3, H, W)
      -> PrefixEncoder (backbone + FPN)                 F  (B, C, h, w)
      -> 6 attribute branches                           e_k (B, 3, D)   one per slot
      -> 1 sentence branch                              s   (B, 5, D)
      -> concat [e_1 .. e_6, s]                         e   (B, 23, D)
      -> m style encoders (linear, per prefix token)    c_j (B, 23, D)  one per caption style
      -> shared GPT-2 decoder (inputs_embeds)
           attribute k of an image: prefix e_k   -> phrase tokens a^k
           caption in style j:      prefix c_j   -> caption tokens y
                                    (caption_condition_tokens > 0: prefix c_j + the six attribute phrases'
                                     token embeddings -> caption tokens y; see CaptionerConfig)

Training is teacher forcing: the decoder reads ``[prefix, t_1 .. t_{n-1}]`` and predicts
``t_1 .. t_n`` (``t_n`` = END). Loss = caption CE + ``attribute_loss_weight`` x attribute CE, each
the mean over its real (non-padding) target tokens.

With ``vocab_shortlist`` the output softmax runs over the ``shortlist`` buffer (the token ids of the
training corpus, set by the trainer and saved with the weights) instead of the whole vocabulary.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import PrefixEncoder
from .config import NUM_ATTRIBUTES, CaptionerConfig

_log = logging.getLogger(__name__)


class PrefixBranch(nn.Module):
    """Table 12: n x Conv(k3,s2,p1) -> AvgPool -> Linear -> Dropout -> Linear -> Dropout -> LeakyReLU
    -> reshape to ``prefix_len`` tokens of width D. Attribute branch: 1 conv, hidden D, 3 tokens;
    sentence branch: 2 convs, hidden 2D, 5 tokens (768 / 2304 and 1536 / 3840 at D = 768)."""

    def __init__(self, channels: int, dim: int, prefix_len: int, num_convs: int, hidden_mult: int,
                 dropout: float, slope: float):
        super().__init__()
        self.prefix_len, self.dim = prefix_len, dim
        self.convs = nn.Sequential(*[nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(num_convs)])
        self.fc1 = nn.Linear(channels, hidden_mult * dim)
        self.fc2 = nn.Linear(hidden_mult * dim, prefix_len * dim)
        self.drop = nn.Dropout(dropout)
        self.act = nn.LeakyReLU(slope)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.convs(feats)  # (B, C, h / 2^n, w / 2^n)
        x = x.mean(dim=(2, 3))  # (B, C)  average pooling
        x = self.drop(self.fc1(x))  # (B, hidden)
        x = self.act(self.drop(self.fc2(x)))  # (B, P * D)
        return x.view(-1, self.prefix_len, self.dim)  # (B, P, D)


class SpacCaptioner(nn.Module):
    def __init__(self, cfg: CaptionerConfig, vocab_size: int, eos_id: int, decoder_config: dict | None = None):
        """``decoder_config``: a saved ``GPT2Config`` dict (loading a checkpoint: the architecture is
        rebuilt from it and ``decoder_weights`` is not read)."""
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.cfg = cfg
        D, C = cfg.prefix_dim, cfg.fpn_channels
        self.encoder = PrefixEncoder(cfg)
        branch = dict(channels=C, dim=D, dropout=cfg.prefix_dropout, slope=cfg.leaky_slope)
        self.attribute_branches = nn.ModuleList(
            PrefixBranch(prefix_len=cfg.attribute_prefix_len, num_convs=1, hidden_mult=1, **branch)
            for _ in range(NUM_ATTRIBUTES))
        self.sentence_branch = PrefixBranch(prefix_len=cfg.sentence_prefix_len, num_convs=2, hidden_mult=2, **branch)
        self.style_encoders = nn.ModuleList(nn.Linear(D, D) for _ in range(cfg.num_styles))
        if decoder_config is not None:
            self.decoder = GPT2LMHeadModel(GPT2Config.from_dict(decoder_config))
        elif cfg.decoder_weights:
            self.decoder = GPT2LMHeadModel.from_pretrained(cfg.decoder_weights, local_files_only=True)
            got = (self.decoder.config.n_embd, self.decoder.config.n_layer, self.decoder.config.vocab_size)
            want = (D, cfg.decoder_layers, vocab_size)
            if got != want:
                raise ValueError(f"decoder_weights: {cfg.decoder_weights} has (width, layers, vocab) = {got}, but "
                                 f"the config and tokenizer say {want}")
            if self.decoder.config.n_positions < cfg.max_positions:
                raise ValueError(f"decoder_weights: {cfg.decoder_weights} has {self.decoder.config.n_positions} "
                                 f"positions; prefix + max_caption_tokens need {cfg.max_positions}")
        else:
            self.decoder = GPT2LMHeadModel(GPT2Config(
                vocab_size=vocab_size, n_positions=cfg.max_positions, n_embd=D, n_layer=cfg.decoder_layers,
                n_head=cfg.decoder_heads, resid_pdrop=cfg.decoder_dropout, embd_pdrop=cfg.decoder_dropout,
                attn_pdrop=cfg.decoder_dropout, bos_token_id=eos_id, eos_token_id=eos_id))
        self.vocab_size, self.eos_id = vocab_size, eos_id
        self.encoder.to(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN) and GPU
        # token ids the softmax ranges over (empty = the whole vocabulary); see set_shortlist
        self.register_buffer("shortlist", torch.zeros(0, dtype=torch.long))

    # --- vocabulary shortlist -----------------------------------------------------------------
    def set_shortlist(self, token_ids) -> None:
        ids = torch.as_tensor(sorted(set(int(i) for i in token_ids) | {self.eos_id}), dtype=torch.long)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"shortlist token ids must lie in [0, {self.vocab_size})")
        self.shortlist = ids.to(self.shortlist.device)

    def output_weight(self) -> torch.Tensor:
        """LM-head rows the softmax ranges over: (V', D)."""
        w = self.decoder.lm_head.weight  # (V, D), tied to the input embedding
        return w.index_select(0, self.shortlist) if len(self.shortlist) else w

    def output_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., V') logits; column i is token ``output_token_ids()[i]``."""
        return hidden @ self.output_weight().t()

    def to_output_index(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> columns of :meth:`output_logits` (the identity without a shortlist)."""
        if not len(self.shortlist):
            return token_ids
        lookup = torch.full((self.vocab_size,), -1, dtype=torch.long, device=token_ids.device)
        lookup[self.shortlist] = torch.arange(len(self.shortlist), device=token_ids.device)
        idx = lookup[token_ids]
        if (idx < 0).any():
            raise ValueError("a target token is not in the vocabulary shortlist")
        return idx

    def from_output_index(self, idx: torch.Tensor) -> torch.Tensor:
        return self.shortlist[idx] if len(self.shortlist) else idx

    # --- prefixes -----------------------------------------------------------------------------
    def encode_prefixes(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) -> attribute prefixes (B, 6, Pa, D), style prefixes (B, m, Pc, D)."""
        feats = self.encoder(images.contiguous(memory_format=torch.channels_last))  # (B, C, h, w)
        attr = torch.stack([b(feats) for b in self.attribute_branches], dim=1)  # (B, 6, Pa, D)
        sent = self.sentence_branch(feats)  # (B, Ps, D)
        joint = torch.cat([attr.flatten(1, 2), sent], dim=1)  # (B, 6 * Pa + Ps, D) = (B, Pc, D)
        styled = torch.stack([enc(joint) for enc in self.style_encoders], dim=1)  # (B, m, Pc, D)
        return attr, styled

    def with_condition(self, prefix: torch.Tensor, condition_tokens: torch.Tensor) -> torch.Tensor:
        """Caption prefixes (N, Pc, D) followed by the embeddings of their attribute condition (N, 6 * K) ->
        (N, Pc + 6 * K, D)."""
        condition = self.decoder.transformer.wte(condition_tokens)
        return torch.cat([prefix, condition.to(prefix.dtype)], dim=1)

    # --- teacher-forced loss ------------------------------------------------------------------
    def sequence_loss(self, prefix: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean CE of ``tokens`` (N, L) (right-padded, ``lengths`` real tokens each) given ``prefix`` (N, P, D)."""
        if tokens.shape[0] == 0:
            return prefix.sum() * 0.0
        N, P = prefix.shape[:2]
        L = int(lengths.max())
        tokens = tokens[:, :L]
        emb = self.decoder.transformer.wte(tokens[:, :-1])  # (N, L-1, D)
        x = torch.cat([prefix.to(emb.dtype), emb], dim=1)  # (N, P+L-1, D)
        # Right padding under a causal mask: pads come after every real token, so no mask is needed.
        h = self.decoder.transformer(inputs_embeds=x, use_cache=False).last_hidden_state[:, P - 1:]  # (N, L, D)
        real = torch.arange(L, device=tokens.device)[None, :] < lengths[:, None]  # (N, L)
        logits = self.output_logits(h[real])  # (T, V')  only the T real target positions
        return F.cross_entropy(logits.float(), self.to_output_index(tokens[real]))

    def forward(self, batch: dict) -> dict:
        """Losses of a collated batch (see ``data.collate``)."""
        attr_prefix, style_prefix = self.encode_prefixes(batch["images"])  # (B,6,Pa,D), (B,m,Pc,D)
        attribute_loss = self.sequence_loss(
            attr_prefix.flatten(0, 1),  # (B*6, Pa, D), rows ordered image-major like the tokens
            batch["attribute_tokens"], batch["attribute_lengths"])
        caption_prefix = style_prefix[batch["caption_image"], batch["caption_style"]]  # (Nc, Pc, D)
        if self.cfg.caption_condition_tokens:
            caption_prefix = self.with_condition(caption_prefix, batch["condition_tokens"][batch["caption_image"]])
        caption_loss = self.sequence_loss(caption_prefix, batch["caption_tokens"], batch["caption_lengths"])
        loss = caption_loss + self.cfg.attribute_loss_weight * attribute_loss
        return {"loss": loss, "caption_loss": caption_loss.detach(), "attribute_loss": attribute_loss.detach()}


def count_parameters(model: nn.Module) -> dict:
    """Parameter counts per top-level part (the tied LM head counted once, in the decoder)."""
    parts = {"encoder": model.encoder, "attribute_branches": model.attribute_branches,
             "sentence_branch": model.sentence_branch, "style_encoders": model.style_encoders,
             "decoder": model.decoder}
    counts = {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
