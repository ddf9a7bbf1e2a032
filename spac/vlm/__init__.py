"""Vision-language models (Qwen2-VL / Qwen2.5-VL, SmolVLM / Idefics3, LLaVA-style) as SPAC captioners, from a
local Hugging Face model directory (``--captioner vlm:DIR``); nothing is ever downloaded.

Modules: ``model_dir`` (``vlm:DIR`` checked, lineage hash), ``instructions`` (the per-style dynamic instructions),
``common`` (decoding options, prompts, attributes from captions), ``captioner`` (the transformers engine),
``vllm_engine`` (the optional vLLM engine).
"""
from .captioner import ENGINES, VlmCaptioner
from .common import VlmDecoding, image_attributes
from .instructions import (FIXED_INSTRUCTION, load_instruction_templates, style_instruction,
                           template_example)
from .model_dir import VLM_PREFIX, directory_record, lineage_sha256, vlm_directory
from .vllm_engine import VllmCaptioner

__all__ = ["VLM_PREFIX", "vlm_directory", "lineage_sha256", "directory_record", "FIXED_INSTRUCTION", "style_instruction",
           "load_instruction_templates", "template_example", "VlmDecoding", "image_attributes", "VlmCaptioner",
           "VllmCaptioner", "ENGINES"]
