import errno

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from fewlabels import checkpoint, plots  # noqa: E402


def _figure(value):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, value])
    return fig


def _save(value, path):
    fig = _figure(value)
    try:
        plots.save_figure(fig, path)
    finally:
        plt.close(fig)


def test_save_writes_a_whole_png_and_a_failed_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "deep" / "curve.png"
    _save(1.0, path)
    first = path.read_bytes()
    assert first.startswith(b"\x89PNG\r\n\x1a\n") and first.endswith(b"IEND\xaeB`\x82")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        _save(2.0, path)
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["curve.png"]  # no temp file left


@pytest.mark.parametrize("panels, most, grid", [(1, 5, (1, 1)), (4, 5, (1, 4)), (5, 5, (1, 5)),
                                                (7, 5, (2, 4)), (14, 5, (3, 5)),
                                                (15, 5, (3, 5)), (12, 10, (2, 6)),
                                                (10, 10, (1, 10))])
def test_many_panels_wrap_into_even_rows(panels, most, grid):
    assert plots.panel_grid(panels, most) == grid
