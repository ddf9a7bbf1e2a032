"""spac.vlm: the vision-language-model captioner on tiny random-weight VLMs built offline (spac/vlm/random_model.py)."""
from __future__ import annotations

import io
import json
import random
import shutil
import sys

import pytest
import torch
from _fixtures import jpeg_bytes
from spac.vlm.random_model import FAMILIES, write_random_vlm
from PIL import Image

from plip_runtime.config import ConfigError
from spac.templates import load_library
from spac.vlm import (FIXED_INSTRUCTION, VLM_PREFIX, VlmCaptioner, VlmDecoding, image_attributes,
                      lineage_sha256, load_instruction_templates, style_instruction, template_example, vlm_directory)
from spac.vlm.model_dir import load_processor
from spac.vlm.instructions import pick_template
from spac.vlm.vllm_engine import MISSING
from synth_pedes.schema import SLOTS

KEYS = ["cam1/0001.jpg", "cam2/0002.jpg", "cam1/0003.jpg"]
SIZES = [(32, 64), (48, 40), (64, 64)]  # unequal aspect ratios: Qwen2-VL gives them unequal numbers of image tokens
FP32 = dict(precision="fp32", max_new_tokens=32)


@pytest.fixture(scope="module", params=FAMILIES)
def vlm(request, tmp_path_factory):
    directory = write_random_vlm(tmp_path_factory.mktemp(request.param), request.param)
    return VlmCaptioner.load(directory, device="cpu", styles=2)


@pytest.fixture(scope="module")
def images():
    return [VlmCaptioner.prepare(jpeg_bytes(i, size)) for i, size in enumerate(SIZES)]


def _prompt_lengths(vlm, images, instructions):
    return [vlm.processor(text=[vlm.prompt_text(per[s])], images=[img], return_tensors="pt")["input_ids"].shape[1]
            for img, per in zip(images, instructions) for s in vlm.styles]


# --- captioning --------------------------------------------------------------------------------------------------
def test_load_uses_the_auto_classes_with_left_padding(vlm):
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    assert vlm.styles == ("vlm-0", "vlm-1")
    assert type(vlm.model).__name__ == MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES[vlm.model.config.model_type]
    assert not vlm.model.training and vlm.tokenizer.padding_side == "left" and vlm.tokenizer.pad_token is not None


def test_caption_one_str_per_image_and_style_deterministic(vlm, images):
    opts = vlm.options(**FP32)
    captions, instructions = vlm.caption(images, KEYS, opts)
    assert len(captions) == len(instructions) == 3
    for per, instr, key in zip(captions, instructions, KEYS):
        assert list(per) == list(instr) == ["vlm-0", "vlm-1"]
        assert all(isinstance(t, str) and t and t == " ".join(t.split()) for t in per.values())
        assert all(len(t.split()) <= opts.max_new_tokens for t in per.values()), "only the new tokens are decoded"
        assert instr == {s: style_instruction(i, key, opts.seed, load_instruction_templates())
                         for i, s in enumerate(vlm.styles)}
    texts = [t for per in captions for t in per.values()]
    assert len(set(texts)) >= 3, f"the image and the instruction should sway even random weights: {texts}"
    assert vlm.caption(images, KEYS, opts) == (captions, instructions)
    assert vlm.caption([], [], opts) == ([], [])
    with pytest.raises(ValueError, match="one key per image"):
        vlm.caption(images, KEYS[:2], opts)


def test_nucleus_is_seeded_per_call(vlm, images):
    opts = vlm.options(method="nucleus", seed=1, **FP32)
    torch.manual_seed(999)
    before = torch.get_rng_state()
    first = vlm.caption(images, KEYS, opts)[0]
    assert torch.equal(torch.get_rng_state(), before), "nucleus sampling must not move the caller's RNG"
    torch.manual_seed(12345)  # the global state does not matter either
    assert vlm.caption(images, KEYS, opts)[0] == first
    assert first != vlm.caption(images, KEYS, opts.replace(method="greedy"))[0]  # same seed: same instructions
    # the seed also picks the instructions: hold the prompts fixed to see the sampling alone change
    pairs = [(img, f"Describe the person {i}.") for i, img in enumerate(images)]
    sampled = vlm.generate(pairs, opts)
    assert vlm.generate(pairs, opts) == sampled
    assert any(vlm.generate(pairs, opts.replace(seed=s)) != sampled for s in (2, 3))


def test_batch_invariance(vlm, images):
    """Left padding done right: a prompt gives the same caption alone, with the others, or chunked otherwise."""
    opts = vlm.options(**FP32)
    together, instructions = vlm.caption(images, KEYS, opts)
    lengths = _prompt_lengths(vlm, images, instructions)
    assert len(set(lengths)) > 1, f"the prompts should differ in length so that padding happens: {lengths}"
    alone = [vlm.caption([img], [key], opts)[0][0] for img, key in zip(images, KEYS)]
    assert alone == together
    vlm.batch_size = 4  # chunks of 4 prompts: image 1's two styles fall into different generate calls
    try:
        assert vlm.caption(images, KEYS, opts)[0] == together
    finally:
        vlm.batch_size = 16


def test_left_padding_changes_logits_only_by_rounding(vlm, images):
    """Why the captions above agree: a prompt's next-token logits alone and left-padded next to a longer prompt
    differ only by float rounding (about 1e-6 on the CPU; see spac.vlm.captioner's docstring). Wrong positions or
    an attention over the padding would differ by far more."""
    short, long = vlm.prompt_text("Describe the person."), vlm.prompt_text("Describe the person" + " in detail" * 6)

    def last_logits(texts, imgs):
        batch = vlm.processor(text=texts, images=imgs, padding=True, return_tensors="pt")
        with torch.inference_mode():
            return vlm.model(**batch).logits[:, -1], batch["attention_mask"]

    alone, _ = last_logits([short], images[:1])
    padded, mask = last_logits([short, long], images[:1] * 2)
    assert mask[0, 0] == 0 and mask[1].all(), "the shorter prompt is padded on the left"
    assert torch.allclose(padded[0], alone[0], rtol=0, atol=1e-4)
    assert not torch.allclose(padded[1], alone[0], rtol=0, atol=1e-2), "another prompt gives other logits"


def test_bf16_autocast_runs(vlm, images):
    captions, _ = vlm.caption(images[:1], KEYS[:1], vlm.options(precision="bf16", max_new_tokens=4))
    assert all(isinstance(t, str) for t in captions[0].values())


def test_describe(vlm):
    info = vlm.describe()
    config = json.loads((vlm.directory / "config.json").read_text())
    assert info["model_type"] == config["model_type"] and info["architectures"] == config["architectures"]
    assert info["path"] == str(vlm.directory) and info["engine"] == "transformers"
    assert info["parameters"] == sum(p.numel() for p in vlm.model.parameters()) > 0
    assert info["sha256"] == lineage_sha256(vlm.directory) and len(info["sha256"]) == 64


def test_lineage_hash_is_reproducible_and_tracks_config_and_weights(tmp_path):
    a, b = write_random_vlm(tmp_path / "a", "qwen2_vl"), write_random_vlm(tmp_path / "b", "qwen2_vl")
    assert lineage_sha256(a) == lineage_sha256(b), "seeded weights: the same files every time"
    (b / "tokenizer_config.json").write_text("{}")
    assert lineage_sha256(a) == lineage_sha256(b), "only config.json and the weights count"
    (b / "config.json").write_text((b / "config.json").read_text() + " ")
    assert lineage_sha256(a) != lineage_sha256(b)
    shutil.copy(a / "config.json", b / "config.json")
    weights = bytearray((b / "model.safetensors").read_bytes())
    weights[-1] ^= 1
    (b / "model.safetensors").write_bytes(bytes(weights))
    assert lineage_sha256(a) != lineage_sha256(b)


def test_pad_token_fallback_and_left_padding(tmp_path):
    directory = write_random_vlm(tmp_path / "m", "llava")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.pop("pad_token", None)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = load_processor(directory).tokenizer
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "left"


def test_a_directory_that_cannot_build_prompts_is_refused_by_name(tmp_path):
    no_template = write_random_vlm(tmp_path / "a", "llava")
    (no_template / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match=f"{no_template}: no chat template"):
        load_processor(no_template)
    no_vocabulary = write_random_vlm(tmp_path / "b", "llava")
    (no_vocabulary / "tokenizer.json").unlink()  # tokenizer_config.json alone is no tokenizer
    with pytest.raises(ValueError, match=r"missing tokenizer files"):
        vlm_directory(no_vocabulary)


# --- images and options -----------------------------------------------------------------------------------------
def test_prepare_rgb_upright_and_corrupt():
    img = Image.new("L", (20, 40), 128)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown 90 degrees turned
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    out = VlmCaptioner.prepare(buf.getvalue())
    assert out.mode == "RGB" and out.size == (40, 20)
    with pytest.raises(ValueError, match="cannot decode image"):
        VlmCaptioner.prepare(b"not an image")
    with pytest.raises(ValueError, match="cannot decode image"):
        VlmCaptioner.prepare(jpeg_bytes(0)[:40])
    with pytest.raises(ValueError, match="needs image bytes"):
        VlmCaptioner.prepare("person.jpg")


def test_decoding_options_validated():
    opts = VlmDecoding()
    assert (opts.method, opts.max_new_tokens, opts.precision) == ("greedy", 64, "auto")
    for bad in ({"method": "beam"}, {"top_p": 0}, {"temperature": 0}, {"max_new_tokens": 0},
                {"precision": "int8"}, {"seed": 1.5}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            opts.replace(**bad)


# --- instructions -----------------------------------------------------------------------------------------------
def test_style_instruction_deterministic_with_a_fixed_part_and_one_template():
    templates = load_instruction_templates()
    assert templates and all(len(t.slots) >= 4 for t in templates)
    assert set(t.text for t in templates) <= set(t.text for t in load_library())
    keys = [f"img/{i:04d}.jpg" for i in range(60)]
    for key in keys:
        first, second = style_instruction(0, key, 7, templates), style_instruction(1, key, 7, templates)
        assert first == style_instruction(0, key, 7, templates)
        assert first.startswith(FIXED_INSTRUCTION) and second.startswith(FIXED_INSTRUCTION)
        picked = pick_template(0, key, 7, templates)
        assert picked is templates[random.Random(f"7:{key}:0").randrange(len(templates))]  # the documented rule
        example = template_example(picked)
        assert f'"{example}"' in first
        assert not any(raw in first for raw in ("[upper]", "[head]", "{", "<", ">"))  # placeholders, not syntax
    differ_styles = sum(style_instruction(0, k, 7, templates) != style_instruction(1, k, 7, templates) for k in keys)
    differ_keys = sum(style_instruction(0, k, 7, templates) != style_instruction(0, keys[0], 7, templates)
                      for k in keys[1:])
    differ_seeds = sum(style_instruction(0, k, 7, templates) != style_instruction(0, k, 8, templates) for k in keys)
    assert differ_styles >= 55 and differ_keys >= 55 and differ_seeds >= 55
    assert style_instruction(0, keys[0], 7) == style_instruction(0, keys[0], 7, templates)


def test_fixed_instruction_asks_for_the_six_things_and_forbids_guessing():
    text = FIXED_INSTRUCTION.lower()
    for word in ("gender", "hair", "upper clothing", "lower clothing", "shoes", "bag", "umbrella", "colour",
                 "one paragraph", "do not guess"):
        assert word in text


def test_template_example_shows_placeholders():
    example = template_example("A [person]< with [head]> is wearing a [upper], [lower] and [shoes]. "
                               "{He} is carrying a [belongings].")
    assert example == ("A [person] with [hair] is wearing [upper clothing], [lower clothing] and [shoes]. "
                       "He/She is carrying [belongings].")


# --- attributes -------------------------------------------------------------------------------------------------
def test_attributes_from_hand_written_captions(vlm):
    captions = [{"vlm-0": "A woman with long black hair wearing a red jacket and blue jeans.",
                 "vlm-1": "A woman in a red jacket and black jeans, carrying a backpack.",
                 "vlm-2": "The man wears a red jacket, blue jeans and white sneakers."},
                {"vlm-0": "A blurry picture.", "vlm-1": "Nothing to see."},
                {}]
    phrases, scores = vlm.attributes(captions)
    assert phrases[0] == {"person": "woman", "head": "long black hair", "upper": "red jacket", "lower": "blue jeans",
                          "shoes": "white sneakers", "belongings": "backpack"}
    assert scores[0] == pytest.approx({"person": 2 / 3, "head": 1 / 3, "upper": 1.0, "lower": 2 / 3, "shoes": 1 / 3,
                                       "belongings": 1 / 3})
    for k in (1, 2):
        assert phrases[k] == {s: "unknown" for s in SLOTS} and scores[k] == {s: 0.0 for s in SLOTS}


def test_attributes_tie_goes_to_the_more_specific_then_the_earlier_phrase():
    phrases, scores = image_attributes({"a": "a man in a shirt", "b": "a man in a blue shirt"})
    assert phrases["upper"] == "blue shirt" and scores["upper"] == 0.5
    phrases, _ = image_attributes({"a": "a man in a red shirt", "b": "a man in a blue shirt"})
    assert phrases["upper"] == "red shirt"


def test_attributes_of_generated_captions_match_the_extractor(vlm, images):
    from spac.phrases import attributes_from_text

    captions, _ = vlm.caption(images, KEYS, vlm.options(**FP32))
    phrases, scores = vlm.attributes(captions)
    for per, got, score in zip(captions, phrases, scores):
        own = [attributes_from_text(t).to_dict() for t in per.values()]
        for slot in SLOTS:
            if got[slot] == "unknown":
                assert all(o[slot] == "unknown" for o in own) and score[slot] == 0.0
            else:
                assert score[slot] == sum(o[slot] == got[slot] for o in own) / len(own) > 0


# --- directories and engines ------------------------------------------------------------------------------------
def test_vlm_directory_accepts_a_model_directory(vlm, tmp_path, monkeypatch):
    assert vlm_directory(f"{VLM_PREFIX}{vlm.directory}") == vlm.directory.resolve()
    monkeypatch.chdir(vlm.directory.parent)
    assert vlm_directory(f"vlm:{vlm.directory.name}") == vlm.directory.resolve()


def test_vlm_directory_errors_name_the_path_and_what_is_missing(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="no such directory") as e:
        vlm_directory(f"vlm:{missing}")
    assert str(missing) in str(e.value) and "nothing is downloaded" in str(e.value)
    with pytest.raises(ValueError, match="no such directory"):
        vlm_directory("vlm:Qwen/Qwen2-VL-2B-Instruct")  # a hub name is no directory: nothing is fetched
    with pytest.raises(ValueError, match="names no directory"):
        vlm_directory("vlm:")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError) as e:
        vlm_directory(f"vlm:{empty}")
    message = str(e.value)
    for part in (str(empty), "config.json", "processor", "tokenizer", "weights", "save_pretrained",
                 "nothing is downloaded"):
        assert part in message
    (empty / "config.json").write_text("{}")
    (empty / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError) as e:
        vlm_directory(f"vlm:{empty}")
    assert "missing processor files (" in str(e.value) and "weights" in str(e.value)  # (a vocabulary is there)
    assert "missing config.json" not in str(e.value) and "tokenizer" not in str(e.value)
    (empty / "processor_config.json").write_text("{}")
    (empty / "model.safetensors").write_bytes(b"")
    assert vlm_directory(f"vlm:{empty}") == empty.resolve()
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        vlm_directory(f"vlm:{afile}")


def test_load_checks_the_directory_first(tmp_path):
    with pytest.raises(ValueError, match="missing config.json"):
        VlmCaptioner.load(tmp_path)
    with pytest.raises(ValueError, match="styles >= 1"):
        VlmCaptioner(tmp_path, None, None, styles=0)
    with pytest.raises(ValueError, match="styles >= 1"):
        VlmCaptioner.load(tmp_path / "not even there", styles=True)


def test_vllm_engine_without_vllm_says_how_to_get_it(vlm, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm fails, whether or not it is installed
    with pytest.raises(ValueError) as e:
        VlmCaptioner.load(vlm.directory, engine="vllm")
    assert MISSING in str(e.value)
    assert MISSING == "vLLM is not installed: pip install vllm on a GPU node, or use --engine transformers"
    with pytest.raises(ValueError, match="not one of transformers, vllm"):
        VlmCaptioner.load(vlm.directory, engine="onnx")
