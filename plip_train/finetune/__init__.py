"""Fine-tuning a PLIP model on the paper's downstream tasks, on the pre-training trainer's machinery.

``text_reid``: text-based person ReID (CMPM/C, CMPM only, linear probe, few-shot subsets, domain generalisation).
"""
from .config import FinetuneConfig, TextReidConfig, recipe_config

__all__ = ["FinetuneConfig", "TextReidConfig", "recipe_config"]
