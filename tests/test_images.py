import warnings

import numpy as np
import pytest
from PIL import Image

from fewlabels import images


def test_decode_brings_every_mode_to_one_size_and_mode(tmp_path):
    grey = np.zeros((10, 20), np.uint8)
    grey[:, 5:15] = 200
    Image.fromarray(grey).save(tmp_path / "wide.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.gif")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.jpg", quality=100)
    for name in ("wide.png", "sixteen.png", "rgba.png", "palette.gif", "rgb.jpg"):
        a = images.decode(tmp_path / name, 8, 1)
        assert a.shape == (1, 8, 8) and a.dtype == np.uint8, name
        # aspect kept: the 20×10 image fills 8×4 rows in the middle, padded above and below
        assert abs(int(a[0, 4, 4]) - 200) <= 3, name
        assert a[0, 0, 4] == a[0, 7, 4], name
    assert images.decode(tmp_path / "rgba.png", 8, 3).shape == (3, 8, 8)
    np.testing.assert_array_equal(images.decode(tmp_path / "sixteen.png", 8, 1),
                                  images.decode(tmp_path / "wide.png", 8, 1))


@pytest.mark.parametrize(("content", "why"), [
    (b"", "empty file"), (b"hello", "not an image"), (None, "no such file")])
def test_unreadable_files_say_why(tmp_path, content, why):
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(images.UnreadableImage, match=why):
        images.decode(path, 8, 1)


def test_a_decompression_bomb_is_unreadable_not_a_crash(tmp_path, monkeypatch):
    Image.new("1", (100, 100)).save(tmp_path / "bomb.png")  # small on disk, many pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the same check at Pillow's limit
    for read in (lambda p: images.decode(p, 8, 1), images.header):
        with pytest.raises(images.UnreadableImage, match="too large.*2,000 pixels.*shrink"):
            read(tmp_path / "bomb.png")


def test_a_large_image_under_the_refusal_is_decoded_without_a_warning(tmp_path, monkeypatch):
    """Between Pillow's limit and twice it an image is decoded; Pillow's warning would
    print in the middle of a run's progress bars and add nothing."""
    Image.new("L", (40, 40), 200).save(tmp_path / "large.png")  # 1,600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert images.decode(tmp_path / "large.png", 8, 1)[0, 4, 4] == 200
        assert images.header(tmp_path / "large.png") is not None


def test_truncated_png_is_unreadable(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(images.UnreadableImage, match="truncated"):
        images.decode(tmp_path / "cut.png", 8, 1)


def test_expand_reads_folders_globs_and_skips_other_extensions(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/1.png", "a/2.JPG", "a/notes.txt", "a/.hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    found, other = images.image_files(tmp_path)
    assert [p.name for p in found] == ["1.png", "2.JPG"]
    assert [p for p, _ in other] == [str(tmp_path / "a" / "notes.txt")]
    assert list(images.expand([str(tmp_path / "a" / "*.png")])) == [str(tmp_path / "a/1.png")]


def test_default_size_is_the_median_longer_side_capped():
    assert images.default_size([(8, 8), (10, 6), (12, 12)]) == 10
    assert images.default_size([(500, 400)] * 3) == images.MAX_DEFAULT_SIZE
