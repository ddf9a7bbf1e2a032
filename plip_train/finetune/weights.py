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
        init_size = cfg.init.get("image_size")  # the initialisation's, where the fine-tune trains at another size
        load_init_weights(model, Path(cfg.init["checkpoint"]) / MODEL_FILE,
                          image_size=None if init_size is None else tuple(init_size))
    return model


def load_init_weights(model: nn.Module, path: Path, image_size: tuple[int, int] | None = None) -> None:
    """Load ``path`` (a PlipModel state dict) strictly into ``model``; the linear projections a linear probe adds
    (``image_projection.*``, ``text_projection.*``) keep their identity initialisation when the file has none.
    ``image_size``: the size the weights were trained at, when ``model`` takes another (attribute recognition's
    256x192 from a 256x128 run): the attention pool's positional embedding is resized to the new grid."""
    from ..models import load_state_dict_checked
    from ..models.image import resize_positional_embedding

    state = read_state_dict(path)
    own = model.state_dict()
    for key, value in own.items():
        if key.startswith(("image_projection.", "text_projection.")) and key not in state:
            state[key] = value
        if key.startswith("image_tower.") and key.endswith(".positional_embedding") and key in state \
                and image_size is not None and state[key].shape != value.shape:
            old_grid = (image_size[0] // 32, image_size[1] // 32)
            new_grid = tuple(model.get_submodule(key.rsplit(".", 1)[0]).grid)  # an AttentionPool2dGrid's
            state[key] = resize_positional_embedding(state[key], old_grid, new_grid)
            _log.info("%s: attention-pool positions resized from a %dx%d to a %dx%d grid (image size %s -> %s)",
                      path, *old_grid, *new_grid, list(image_size), [g * 32 for g in new_grid])
    load_state_dict_checked(model, state, source=str(path))
