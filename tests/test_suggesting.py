"""`fewlabels suggest` on a folder of real handwritten digits (scikit-learn's 8×8 set)."""

import json
import os
import shutil

import pytest
from digits_folder import write_digits_folder

from fewlabels.cli import main
from fewlabels.errors import UsageError
from fewlabels.suggesting import suggest


@pytest.fixture
def digits(tmp_path):
    root = tmp_path / "digits"
    write_digits_folder(root, per_class=2, test=0)
    return root


@pytest.mark.parametrize("strategy", ["typical", "coverage", "random"])
def test_suggests_unlabeled_images_only_in_a_stable_order(digits, tiny_encoder, strategy):
    r = suggest(digits, 12, tiny_encoder, strategy=strategy, seed=1)
    files = r["files"]
    assert len(files) == 12 == len(set(files)) and r["labeled"] == 20
    assert all(f.startswith("unlabeled" + os.sep) for f in files)
    assert r["candidates"] == 1797 - 20
    again = suggest(digits, 12, tiny_encoder, strategy=strategy, seed=1)["files"]
    assert again == files


def test_without_labeled_images_every_image_is_a_candidate(tmp_path, tiny_encoder, digits):
    (digits / "labeled").rename(tmp_path / "elsewhere")
    r = suggest(digits, 5, tiny_encoder)
    assert r["labeled"] == 0 and r["candidates"] == 1797 - 20 and len(r["files"]) == 5


def test_coverage_does_not_guess_the_class_count(tmp_path, tiny_encoder, digits, capsys):
    # nothing labeled, no --classes: told a wrong count, coverage found 2 of 5 classes
    (digits / "labeled").rename(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="--strategy coverage needs the number of classes"):
        suggest(digits, 5, tiny_encoder, strategy="coverage")
    assert main(["suggest", str(digits), "--budget", "5", "--encoder", str(tiny_encoder),
                 "--strategy", "coverage"]) == 2
    assert "--classes N" in capsys.readouterr().err
    r = suggest(digits, 5, tiny_encoder, strategy="coverage", classes=10)
    assert r["labeled"] == 0 and len(r["files"]) == 5


def test_one_class_folder_begun_is_not_a_class_count(tmp_path, tiny_encoder, digits):
    """labeled/ with one class folder so far: typical suggests (it was refused as
    "--classes 1", an option nobody gave); coverage asks for the count."""
    for folder in sorted((digits / "labeled").iterdir())[1:]:
        folder.rename(tmp_path / folder.name)
    r = suggest(digits, 5, tiny_encoder)
    assert r["labeled"] == 2 and len(r["files"]) == 5
    with pytest.raises(UsageError, match="holds 1 class folder, too few to count them: give "
                                         "--classes N"):
        suggest(digits, 5, tiny_encoder, strategy="coverage")


def test_the_command_prints_the_list_and_writes_links(digits, tiny_encoder, tmp_path, capsys):
    links = tmp_path / "to-label"
    assert main(["suggest", str(digits), "--budget", "4", "--encoder", str(tiny_encoder),
                 "--format", "json", "--links", str(links)]) == 0
    out = capsys.readouterr()
    files = json.loads(out.out)
    assert len(files) == 4 and "4 of 1777 images suggested by typical" in out.err
    made = sorted(links.iterdir())
    assert [p.name[:5] for p in made] == ["0001-", "0002-", "0003-", "0004-"]
    assert [p.resolve() for p in made] == [(digits / f).resolve() for f in files]
    # the links folder is never written into twice
    assert main(["suggest", str(digits), "--budget", "4", "--encoder", str(tiny_encoder),
                 "--links", str(links)]) == 2
    assert "is not an empty folder" in capsys.readouterr().err and len(list(links.iterdir())) == 4


@pytest.mark.parametrize("budget", [0, 1778])
def test_a_budget_out_of_range_names_the_range(digits, tiny_encoder, budget):
    with pytest.raises(UsageError, match=r"--budget .* out of range: use 1\.\.1777"):
        suggest(digits, budget, tiny_encoder)


def test_a_folder_with_nothing_to_choose_from_is_one_line(tmp_path, tiny_encoder):
    (tmp_path / "d" / "unlabeled").mkdir(parents=True)
    assert main(["suggest", str(tmp_path / "d"), "--budget", "3", "--encoder",
                 str(tiny_encoder)]) == 2


def test_a_links_folder_that_cannot_be_made_is_refused_before_the_work(digits, tiny_encoder,
                                                                       tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    assert main(["suggest", str(digits), "--budget", "3", "--encoder", str(tiny_encoder),
                 "--format", "json", "--links", str(tmp_path / "a-file" / "links")]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "cannot be made (Not a directory)" in out.err
    # a new folder several levels down is tried, and not left behind by the check
    from fewlabels.suggesting import check_links
    check_links(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()


def test_more_classes_than_images_is_refused(digits, tiny_encoder):
    with pytest.raises(UsageError, match=r"--classes 1798 is out of range: use 10\.\.1797"):
        suggest(digits, 3, tiny_encoder, strategy="coverage", classes=1798)


def test_fewer_classes_than_labeled_has_are_refused(digits, tiny_encoder):
    """Told 1 class beside labeled/'s 10, coverage ran on a radius for one class."""
    with pytest.raises(UsageError, match=r"--classes 1 is out of range: use at least 10 "
                                         r"\('.*labeled' holds 10 class folders\)"):
        suggest(digits, 3, tiny_encoder, strategy="coverage", classes=1)
    shutil.rmtree(digits / "labeled")
    with pytest.raises(UsageError, match=r"use at least 2 \(a classifier tells two"):
        suggest(digits, 3, tiny_encoder, strategy="coverage", classes=1)
