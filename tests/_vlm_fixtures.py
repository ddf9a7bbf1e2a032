"""Tiny random-weight vision-language models, built offline, for the VLM captioner's tests.

``write_tiny_vlm(directory, family)`` writes a model directory as ``save_pretrained`` does (config, safetensors
weights, processor, tokenizer, chat template) that ``AutoProcessor`` / ``AutoModelForImageTextToText`` load with
``local_files_only=True``. Families:

* ``llava``: ``LlavaForConditionalGeneration`` = a tiny ``CLIPVisionConfig`` (32x32 images, 8x8 patches: 16 image
  tokens after the CLS token is dropped) + a tiny ``LlamaConfig``; ``LlavaProcessor`` with a 32x32
  ``LlavaImageProcessor`` and a LLaVA-1.5 style chat template ("USER: <image>\\n... ASSISTANT:");
* ``qwen2_vl``: ``Qwen2VLForConditionalGeneration`` = a tiny vision tower (4x4 patches, 2x2 merge) + a tiny
  text model with multimodal rotary positions (mrope sections 2/1/1 of a head of 8); ``Qwen2VLProcessor`` whose
  image processor resizes to 256..1024 pixels, so images of other aspect ratios get other numbers of image tokens
  (prompts of unequal length: left padding is exercised); the ChatML chat template of Qwen2-VL;
* ``idefics3`` (SmolVLM): ``Idefics3ForConditionalGeneration`` = a tiny SigLIP-style vision tower (32x32 tiles,
  8x8 patches, pixel shuffle 2: 4 image tokens per tile) + a tiny ``LlamaConfig``; ``Idefics3Processor`` whose
  image processor resizes to a longest edge of 64 and splits into 32x32 tiles plus a global view, so images of
  other shapes get other numbers of tiles (padded tile batches, unequal prompts); SmolVLM's chat template
  ("<|im_start|>User:<image>...<end_of_utterance>\nAssistant:").

The tokenizer is a ``tokenizers`` WordLevel model over a small vocabulary of everyday clothing / colour words
(so that even random weights generate words the phrase extractor can match), split on whitespace and
punctuation, with the family's special tokens as added tokens, wrapped in ``PreTrainedTokenizerFast``.
Weights come from ``torch.manual_seed(0)`` (matrices drawn with std 0.2, see ``_spread``): the same directory
contents every time. About 0.2-0.3 MB each.
"""
from __future__ import annotations

from pathlib import Path

FAMILIES = ("llava", "qwen2_vl", "idefics3")

WORDS = ("man woman person wearing black white red blue green grey yellow dark light shirt t-shirt jacket coat "
         "trousers jeans pants shorts skirt dress shoes sneakers boots bag backpack umbrella hair long short "
         "with and a the is carrying has his her in").split()
PUNCTUATION = [".", ",", ":", "-", "(", ")", ";", "!", "?", "'", '"', "[", "]", "/"]

LLAVA_CHAT = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>{{ '\\n' }}{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %} {% else %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")

QWEN2_VL_CHAT = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system{{ '\\n' }}You are a helpful assistant.<|im_end|>{{ '\\n' }}{% endif %}"
    "<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}")


def _tokenizer(special: list[str], extra_words: tuple = (), **tokens):
    """A WordLevel fast tokenizer: ``special`` first (as added special tokens), then the words and punctuation."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {}
    for t in [*special, *WORDS, *extra_words, *PUNCTUATION]:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token=special[0]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation runs
    tok.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces, no space before punctuation
    tok.add_special_tokens(special)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=special[0], **tokens), vocab


def _spread(model, std: float = 0.2):
    """Matrices re-drawn with a larger spread than the models' 0.02 initialisation, so that the image and the
    prompt sway the logits: generations then differ between images and styles and near-ties are rare."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, std)
    return model.eval()


def _llava(directory: Path) -> None:
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaImageProcessor, LlavaProcessor)

    special = ["<unk>", "<pad>", "<s>", "</s>", "<image>"]
    tokenizer, vocab = _tokenizer(special, ("USER", "ASSISTANT"), pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"])
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab["<image>"],
                         image_seq_length=16, vision_feature_layer=-1, vision_feature_select_strategy="default")
    model = _spread(LlavaForConditionalGeneration(config))
    images = LlavaImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_CHAT)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


def _qwen2_vl(directory: Path) -> None:
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    special = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|image_pad|>", "<|video_pad|>"]
    tokenizer, vocab = _tokenizer(special, ("system", "user", "assistant", "You", "are", "helpful"),
                                  pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                  extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                                        "vision_bos_token": "<|vision_start|>",
                                                        "vision_eos_token": "<|vision_end|>"})
    vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=4, mlp_ratio=2, patch_size=4,
                  spatial_merge_size=2, temporal_patch_size=2)
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, bos_token_id=None,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<|endoftext|>"])
    config = Qwen2VLConfig(vision_config=vision, text_config=text, image_token_id=vocab["<|image_pad|>"],
                           video_token_id=vocab["<|video_pad|>"], vision_start_token_id=vocab["<|vision_start|>"],
                           vision_end_token_id=vocab["<|vision_end|>"])
    model = _spread(Qwen2VLForConditionalGeneration(config))
    sizes = dict(min_pixels=256, max_pixels=1024, patch_size=4, temporal_patch_size=2, merge_size=2)
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**sizes), tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(**sizes), chat_template=QWEN2_VL_CHAT)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


SMOLVLM_CHAT = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


def _idefics3(directory: Path) -> None:
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor,
                              Idefics3Processor, LlamaConfig)

    special = ["<unk>", "<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>",
               "<image>", "<global-img>"] + [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    tokenizer, vocab = _tokenizer(special, ("User", "Assistant"), pad_token="<|endoftext|>",
                                  bos_token="<|im_start|>", eos_token="<end_of_utterance>")
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                       pad_token_id=vocab["<|endoftext|>"], bos_token_id=vocab["<|im_start|>"],
                       eos_token_id=vocab["<end_of_utterance>"])
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8)
    config = Idefics3Config(vision_config=vision, text_config=text, image_token_id=vocab["<image>"], scale_factor=2,
                            pad_token_id=vocab["<|endoftext|>"])
    model = _spread(Idefics3ForConditionalGeneration(config))
    images = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                    do_image_splitting=True)
    processor = Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=SMOLVLM_CHAT)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


def write_tiny_vlm(directory: Path, family: str) -> Path:
    """Write a tiny random-weight VLM of ``family`` (:data:`FAMILIES`) to ``directory``; returns it."""
    import torch

    builders = {"llava": _llava, "qwen2_vl": _qwen2_vl, "idefics3": _idefics3}
    if family not in builders:
        raise ValueError(f"no tiny VLM family {family!r}; families: {FAMILIES}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        builders[family](directory)
    return directory
