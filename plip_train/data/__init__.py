"""The pre-training data pipeline: a verified caption dataset -> identity-aware batches
(docs/reimplementation.md#data-and-transforms)."""
from .index import BatchShape, DataError, TrainIndex, plan_epoch
from .loader import PlipStream, StreamSpec, choose_caption, make_loader
from .transforms import SYNTH_PEDES_MEAN, SYNTH_PEDES_STD, CaptionEncoder, ImageAugment, ImageTransform, phrase_index

__all__ = ["BatchShape", "DataError", "TrainIndex", "plan_epoch", "PlipStream", "StreamSpec", "choose_caption",
           "make_loader", "SYNTH_PEDES_MEAN", "SYNTH_PEDES_STD", "CaptionEncoder", "ImageAugment", "ImageTransform", "phrase_index"]
