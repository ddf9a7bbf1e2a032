"""Random-weight vision-language models built offline: the tests' tiny ones, and the GPU benchmark's ``small`` one.

``write_random_vlm(directory, family, size)`` writes a model directory as ``save_pretrained`` does (config,
safetensors weights, processor, tokenizer, chat template) that ``AutoProcessor`` / ``AutoModelForImageTextToText``
load with ``local_files_only=True``. Nothing is downloaded, and the captions are word salad: these models test the
machinery and time it, they caption nothing. Families (size ``tiny``):

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

Size ``small`` (``llava`` only) has the compute of a small real VLM for throughput figures: a CLIP ViT-B/16 at
224x224 (196 image tokens) and a 30-layer, 576-wide Llama (SmolLM-135M's shape), about 230 M parameters; only its
vocabulary is the tiny one, so its output layer is cheaper than a real model's.
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


# LLaVA sizes: (vision width, MLP, layers, heads, image side, patch), (text width, MLP, layers, heads, KV heads,
# positions)
LLAVA_SIZES = {"tiny": ((32, 64, 2, 4, 32, 8), (32, 64, 2, 4, 2, 512)),
               "small": ((768, 3072, 12, 12, 224, 16), (576, 1536, 30, 9, 3, 2048))}


def _llava(directory: Path, size: str = "tiny") -> None:
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaImageProcessor, LlavaProcessor)

    (v_width, v_mlp, v_layers, v_heads, side, patch), (t_width, t_mlp, t_layers, t_heads, t_kv, positions) = \
        LLAVA_SIZES[size]
    special = ["<unk>", "<pad>", "<s>", "</s>", "<image>"]
    tokenizer, vocab = _tokenizer(special, ("USER", "ASSISTANT"), pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(hidden_size=v_width, intermediate_size=v_mlp, num_hidden_layers=v_layers,
                              num_attention_heads=v_heads, image_size=side, patch_size=patch,
                              projection_dim=v_width)
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=t_width, intermediate_size=t_mlp,
                       num_hidden_layers=t_layers, num_attention_heads=t_heads, num_key_value_heads=t_kv,
                       max_position_embeddings=positions,
                       pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"])
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=vocab["<image>"],
                         image_seq_length=(side // patch) ** 2, vision_feature_layer=-1,
                         vision_feature_select_strategy="default")
    model = _spread(LlavaForConditionalGeneration(config), std=0.2 if size == "tiny" else 0.02)
    images = LlavaImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=patch,
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


def write_random_vlm(directory: Path, family: str, size: str = "tiny") -> Path:
    """Write a random-weight VLM of ``family`` (:data:`FAMILIES`) and ``size`` (``tiny``; ``small`` for llava) to
    ``directory``; returns it."""
    import torch

    builders = {"llava": _llava, "qwen2_vl": _qwen2_vl, "idefics3": _idefics3}
    if family not in builders:
        raise ValueError(f"no random VLM family {family!r}; families: {FAMILIES}")
    if size != "tiny" and not (family == "llava" and size in LLAVA_SIZES):
        raise ValueError(f"no {size!r} size for {family}: sizes are tiny (every family) and small (llava)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        builders[family](directory, size) if family == "llava" else builders[family](directory)
    return directory
