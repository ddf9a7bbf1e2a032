"""Initial weights of a fine-tune: a PLIP run's model (into a model that may add projections after its towers),
or a config's own initial weights (the no-pre-training baseline)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from plip_runtime.weights import read_state_dict


_log = logging.getLogger(__name__)


def initial_model(cfg, resuming: bool, towers: tuple[str, ...] = ("image", "text")) -> nn.Module:
    """The fine-tune's model before training: for ``init.kind == "config"``, the config's own initial weights
    (seeded with ``train.seed``; a warning when one of the ``towers`` that train would start random); else the
    ``init`` run's checkpoint, loaded unless the run is ``resuming`` (it then loads its own checkpoint)."""
    from ..checkpoint import MODEL_FILE
    from ..models import build_model

    if cfg.init["kind"] == "config":
        random = [f"model.{name}.pretrained" for name in towers if getattr(cfg.model, name).pretrained is None]
        if random:
            _log.warning("fine-tuning from config %s with randomly initialised %s: set %s to local weights "
                         "(--set KEY=PATH) for an ImageNet / BERT baseline", cfg.init["source"],
                         " and ".join(r.split(".")[1] + " tower" for r in random), " and ".join(random))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed)
            return build_model(cfg.model, load_pretrained=True)
    model = build_model(cfg.model, load_pretrained=False)
    if not resuming:
        load_init_weights(model, Path(cfg.init["checkpoint"]) / MODEL_FILE)
    return model


def load_init_weights(model: nn.Module, path: Path) -> None:
    """Load ``path`` (a PlipModel state dict) strictly into ``model``; the linear projections a linear probe adds
    (``image_projection.*``, ``text_projection.*``) keep their identity initialisation when the file has none."""
    from ..models import load_state_dict_checked

    state = read_state_dict(path)
    own = model.state_dict()
    for key, value in own.items():
        if key.startswith(("image_projection.", "text_projection.")) and key not in state:
            state[key] = value
    load_state_dict_checked(model, state, source=str(path))
