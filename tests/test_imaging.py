"""synth_pedes.imaging: the one decoder of image bytes for models, and every reader using it."""
import io

import numpy as np
import pytest
from PIL import Image

from synth_pedes.imaging import exif_orientation, open_rgb, to_rgb

GRADIENT16 = np.linspace(0, 65535, 64 * 32).reshape(64, 32).astype(np.uint16)  # top black, bottom white


def _encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png16() -> bytes:
    return _encoded(Image.fromarray(GRADIENT16), "PNG")


def _rotated_jpeg() -> bytes:
    """A 64x32 (landscape) JPEG whose EXIF orientation 6 says: show it turned, as 32x64 (portrait); its left
    column is white, so shown upright the top row is white."""
    a = np.zeros((32, 64, 3), np.uint8)
    a[:, :8] = 255
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6
    return _encoded(img, "JPEG", exif=exif, quality=95)


def _assert_gradient(img: Image.Image) -> None:
    a = np.asarray(img.convert("L"), np.float64)
    assert (a == 255).mean() < 0.05, "clipped to white"
    rows = a.mean(axis=1)
    assert rows[0] < 10 and rows[-1] > 245 and np.all(np.diff(rows) >= 0), rows


@pytest.mark.parametrize("image", [
    Image.fromarray(GRADIENT16),  # I;16, as PNG decodes
    Image.frombytes("I;16B", (32, 64), GRADIENT16.astype(">u2").tobytes()),
    Image.fromarray(GRADIENT16.astype(np.int32)),  # I holding 16-bit values
    Image.fromarray(GRADIENT16.astype(np.float32) / 65535),  # F in 0..1
    Image.fromarray(GRADIENT16.astype(np.float32) * 3 - 100),  # F in its own range
], ids=["I;16", "I;16B", "I", "F 0..1", "F any"])
def test_high_bit_depth_is_scaled_not_clipped(image):
    out = to_rgb(image)
    assert out.mode == "RGB" and out.size == (32, 64)
    _assert_gradient(out)


def test_16_bit_png_decodes_to_the_gradient():
    _assert_gradient(open_rgb(_png16()))


def test_palette_alpha_and_cmyk_become_rgb():
    colour = Image.new("RGB", (8, 8), (200, 100, 50))
    for mode in ("P", "PA", "LA", "RGBA", "CMYK", "1", "L"):
        assert to_rgb(colour.convert(mode)).mode == "RGB", mode


def test_exif_orientation_is_applied():
    data = _rotated_jpeg()
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.size == (64, 32) and exif_orientation(stored) == 6
    img = open_rgb(data)
    assert img.size == (32, 64)
    a = np.asarray(img.convert("L"), np.float64)
    assert a[:4].mean() > 200 and a[16:].mean() < 50  # the white column is now the top rows
    assert open_rgb(data, draft=(16, 32)).size == (16, 32)  # JPEG draft: half scale, still upright


def _decoders():
    """Every place that decodes image bytes for a model or a person, as ``bytes -> PIL RGB image``."""
    from plip_train.data.transforms import ImageTransform
    from plip_train.embed import Embedder
    from spac.captioner.data import open_image
    from spac.recognizers.base import decode_image

    return {
        "spac.recognizers.base.decode_image": lambda data: decode_image({"image": {"bytes": data}}),
        "spac.captioner.data.open_image": open_image,
        "plip_train ImageTransform.load": lambda data: ImageTransform(size=(64, 32)).load(data),
        "plip_train Embedder._decode": lambda data: Embedder._decode(None, data, "test"),
    }


@pytest.mark.parametrize("name", list(_decoders()))
def test_every_reader_decodes_like_open_rgb(name):
    decode = _decoders()[name]
    _assert_gradient(decode(_png16()))
    assert np.array_equal(np.asarray(decode(_rotated_jpeg())), np.asarray(open_rgb(_rotated_jpeg())))


def test_contact_sheet_decodes_like_open_rgb(tmp_path):
    from synth_pedes.procpedes.contact_sheet import contact_sheet

    records = [{"key": "k", "image": {"bytes": _png16()}, "attributes": {}}]
    contact_sheet(records, tmp_path / "sheet.png", columns=1)
    top = np.asarray(Image.open(tmp_path / "sheet.png").convert("L"))[:66]  # the image; its phrases are below
    assert (top < 128).sum() > 32 * 64 // 3  # the dark half of the gradient, not a white image
