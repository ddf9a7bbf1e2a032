"""Initial weights of a fine-tune: a PLIP run's model, into a model that may add linear projections."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from plip_runtime.weights import read_state_dict


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
