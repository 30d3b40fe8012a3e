import numpy as np
import pytest
from digits_folder import digits_arrays, write_digits_folder
from PIL import Image

from fewlabels.errors import UsageError
from fewlabels.userdata import load_user_data


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def quiet(path, **kw):
    warnings = []
    ds, skipped = load_user_data(path, progress=False, warn=warnings.append, **kw)
    return ds, skipped, warnings


def test_a_folder_is_decoded_once_and_a_changed_file_is_noticed(tmp_path):
    root = tmp_path / "digits"
    counts = write_digits_folder(root, per_class=3, test=50)
    ds, skipped, _ = quiet(root)
    assert ds.classes == tuple(str(c) for c in range(10))
    assert len(ds.train_images) == counts["labeled"] + counts["unlabeled"]
    assert (ds.train_labels == -1).sum() == counts["unlabeled"]
    assert len(ds.test_labels) == 50 and ds.image_shape == (1, 8, 8)
    cached = list((tmp_path / "cache" / "fewlabels" / "images").glob("*.npz"))
    assert len(cached) == 1
    again, _, _ = quiet(root)
    assert (again.train_images == ds.train_images).all()
    assert list((tmp_path / "cache" / "fewlabels" / "images").glob("*.npz")) == cached
    victim = next((root / "labeled" / "0").glob("*.png"))
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(victim)
    changed, _, _ = quiet(root)
    assert len(list((tmp_path / "cache" / "fewlabels" / "images").glob("*.npz"))) == 2
    assert not (changed.train_images == ds.train_images).all()


def test_image_size_option_resizes(tmp_path):
    write_digits_folder(tmp_path / "d", per_class=2, test=0)
    ds, _, _ = quiet(tmp_path / "d", image_size=16)
    assert ds.image_shape == (1, 16, 16) and len(ds.test_labels) == 0


def test_warnings_for_a_single_image_class_and_unbalanced_labels(tmp_path):
    images, labels = digits_arrays()
    y = np.full(len(labels), -1)
    y[np.flatnonzero(labels == 0)[:30]] = 0
    y[np.flatnonzero(labels == 1)[:1]] = 1
    np.savez(tmp_path / "d.npz", x_train=images, y_train=y, classes=np.array(["zero", "one"]))
    ds, _, warnings = quiet(tmp_path / "d.npz")
    assert ds.classes == ("zero", "one")
    assert any("single labeled image: one (1)" in w for w in warnings)
    assert any("very unbalanced" in w for w in warnings)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x_train": np.zeros((4, 8, 8), np.uint8)}, "no 'y_train' array"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 0, -1, -1])},
     "a classifier needs at least two"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([-1] * 4)},
     "has no labeled image"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 0, -1]),
      "classes": np.array(["a", "b", "c"])},
     r"classes \['c'\] have no labeled image: add images to their labeled/<class>/ folders"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 5, -1]),
      "classes": np.array(["a", "b"])}, r"holds labels in \[-1, 5\]"),
    ({"x_train": np.zeros((4, 8), np.uint8), "y_train": np.array([0, 1, 0, 1])},
     "has shape"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 0])},
     "4 images but y_train 3 labels"),
    ({"x_train": np.full((4, 8, 8), np.nan, np.float32), "y_train": np.array([0, 1, 0, 1])},
     "holds 256 NaN or infinite pixel"),
    ({"x_train": np.full((4, 8, 8), 1.5, np.float32), "y_train": np.array([0, 1, 0, 1])},
     r"holds values in \[1.5, 1.5\]: give uint8, floats in \[0, 1\], or whole numbers"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 0, 1]),
      "classes": np.array(["cat", "cat"])}, r"classes names \['cat'\] more than once"),
    # a misnamed array is not ignored: class_names would have left the classes "0", "1"
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 0, 1]),
      "class_names": np.array(["cat", "dog"])},
     r"holds arrays fewlabels does not read: \['class_names'\]; it reads x_train, y_train"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 0.5, 0, 1])},
     "y_train holds values that are not whole numbers"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 0, 1], complex)},
     r"y_train holds values that are not whole numbers \(dtype complex128\)"),
    # two labels a row would flatten into twice the labels: refused as a shape
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros((4, 2), np.int64)},
     r"y_train has shape \[4, 2\]: give one class index an image"),
])
def test_bad_arrays_are_one_clear_error(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UsageError, match=message):
        quiet(tmp_path / "bad.npz")


def test_labels_of_shape_n_by_1_are_read_as_keras_stores_them(tmp_path):
    np.savez(tmp_path / "k.npz", x_train=np.zeros((4, 8, 8), np.uint8),
             y_train=np.array([[0], [1], [0], [-1]]))
    assert quiet(tmp_path / "k.npz")[0].train_labels.tolist() == [0, 1, 0, -1]


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"])
def test_an_empty_or_truncated_npz_is_one_clear_error(tmp_path, content):
    (tmp_path / "bad.npz").write_bytes(content)
    with pytest.raises(UsageError, match="is not a readable .npz"):
        quiet(tmp_path / "bad.npz")


def test_a_folder_without_labeled_images_is_refused(tmp_path):
    (tmp_path / "d" / "unlabeled").mkdir(parents=True)
    with pytest.raises(UsageError, match="has no labeled/ folder"):
        quiet(tmp_path / "d")
    with pytest.raises(UsageError, match="neither a folder nor an .npz"):
        quiet(tmp_path / "missing")


def test_images_directly_in_labeled_are_named_and_a_hidden_test_folder_is_no_class(tmp_path):
    from PIL import Image

    root = tmp_path / "d"
    (root / "labeled" / "a").mkdir(parents=True)
    (root / "labeled" / "b").mkdir()
    for name, folder in (("1.png", "a"), ("2.png", "b"), ("3.png", "a"), ("4.png", "b")):
        Image.new("L", (8, 8), 255 if folder == "a" else 0).save(root / "labeled" / folder / name)
    (root / "test" / ".thumbnails").mkdir(parents=True)  # hidden: ignored, as in labeled/
    ds, _, _ = quiet(root)
    assert ds.classes == ("a", "b")
    Image.new("L", (8, 8)).save(root / "labeled" / "stray.png")
    with pytest.raises(UsageError, match=r"lie directly in labeled/ \(stray.png"):
        quiet(root)


@pytest.mark.parametrize("size", [3, 513, 30_000])
def test_an_image_size_out_of_range_is_refused_before_any_image_is_read(tmp_path, size):
    with pytest.raises(UsageError, match=rf"--image-size {size} is out of range: use 4\.\.512"):
        quiet(tmp_path / "nowhere", image_size=size)


def test_images_that_would_not_fit_in_memory_are_refused_before_decoding():
    from fewlabels.userdata import check_fits_in_memory

    check_fits_in_memory(1_000, 3, 64)
    with pytest.raises(UsageError, match="need .* GiB, more than half .* smaller --image-size"):
        check_fits_in_memory(10**9, 3, 512)


def test_links_that_dangle_or_loop_and_pipes_are_listed_and_skipped(tmp_path):
    import os

    root = tmp_path / "digits"
    write_digits_folder(root, per_class=3, test=0)
    (root / "labeled" / "3" / "dangling.png").symlink_to(tmp_path / "gone.png")
    (root / "labeled" / "3" / "loop.png").symlink_to(root / "labeled" / "3" / "loop.png")
    os.mkfifo(root / "labeled" / "4" / "pipe.png")  # reading it would wait forever
    ds, skipped, _ = quiet(root)
    why = {p.split("/")[-1]: reason for p, reason in skipped.files}
    assert set(why) == {"dangling.png", "loop.png", "pipe.png"}
    assert "no such file" in why["dangling.png"] and "not a file" in why["pipe.png"]
    again, skipped_again, _ = quiet(root)  # from the cache: the same files are named
    assert skipped_again.files == skipped.files
    assert len(again.train_images) == len(ds.train_images)


def test_a_skipped_file_whose_name_holds_a_line_break_stays_one_line(tmp_path):
    root = tmp_path / "digits"
    write_digits_folder(root, per_class=3, test=0)
    (root / "labeled" / "3" / "two\nlines.png").write_bytes(b"not a picture")
    _, skipped, _ = quiet(root)
    lines = skipped.summary().splitlines()
    assert len(lines) == 2 and "'" in lines[1] and "two\\nlines.png" in lines[1]
    nothing = tmp_path / "nothing"
    (nothing / "labeled" / "a").mkdir(parents=True)
    (nothing / "labeled" / "a" / "bad\nname.png").write_bytes(b"")
    with pytest.raises(UsageError, match="1 file.s. could not be used: .*bad.*empty") as e:
        quiet(nothing)
    assert "\n" not in str(e.value)


def test_a_built_in_name_given_to_fit_points_to_compare(tmp_path):
    with pytest.raises(UsageError, match=r"'mnist' is a built-in dataset: `fewlabels compare "
                                         r"--dataset mnist`"):
        quiet("mnist")
    with pytest.raises(UsageError, match=r"neither a folder nor an \.npz file") as e:
        quiet(tmp_path / "nothere")
    assert "built-in" not in str(e.value)


def test_an_npz_that_is_missing_or_not_a_file_is_named_as_such(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.npz")  # reading it would wait forever
    with pytest.raises(UsageError, match="'.*pipe.npz' is not a regular file: give an .npz"):
        load_user_data(tmp_path / "pipe.npz", progress=False)
    with pytest.raises(UsageError, match="'.*gone.npz' does not exist: give an .npz"):
        load_user_data(tmp_path / "gone.npz", progress=False)
