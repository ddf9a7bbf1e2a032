"""Fine-tuning a PLIP model on the paper's downstream tasks, on the pre-training trainer's machinery
(docs/evaluation.md#fine-tuning-protocols).

``text_reid``: text-based person ReID (CMPM/C, CMPM only, linear probe, few-shot subsets ``subset``, domain
generalisation). ``image_reid``: image-based person ReID with BoT (``reid_losses``). ``par``: pedestrian attribute
recognition's metrics, weighted BCE and annotation readers (Rethinking_of_PAR). ``config`` holds the recipes,
``results`` the one report every fine-tune writes.
"""
from .config import FinetuneConfig, ImageReidConfig, TextReidConfig, make_config, recipe_config

__all__ = ["FinetuneConfig", "ImageReidConfig", "TextReidConfig", "make_config", "recipe_config"]
