"""User tile sizes: checked, rounded to the pooling grid, and never leaving gaps."""

import numpy as np
import pytest

from napari_semiseg.errors import SemisegInputError
from napari_semiseg.inference import TilingConfig, predict_tiled, run
from napari_semiseg.inference.tiling import fit_tiling, min_tile_size, plan_tiles


def _outcome(make):
    """``(result, None)``, or ``(None, message)`` when ``make`` raises an input error."""
    try:
        return make(), None
    except SemisegInputError as exc:
        return None, str(exc)


def _coverage(config, multiple, shape=(150, 97)):
    """Blended output of a network that returns ones: 0 where no tile has weight."""
    image = np.zeros((1, *shape), np.float32)
    return run(predict_tiled(lambda b: np.ones_like(b), image, 1, config, multiple=multiple))


@pytest.mark.parametrize("multiple", [1, 2, 4, 16])
@pytest.mark.parametrize("tile_size", [1, 3, 5, 7, 9, 13, 17, 33, 63, 65, 101])
def test_small_odd_tile_sizes_error_clearly_or_cover_every_pixel(tile_size, multiple):
    config, error = _outcome(lambda: fit_tiling(tile_size, multiple))
    if error is not None:
        assert tile_size < min_tile_size(multiple)
        assert "Fix: use a tile size of at least" in error
        return
    assert config.tile_size % multiple == 0
    assert config.tile_size >= tile_size
    assert np.all(_coverage(config, multiple) == 1.0)


@pytest.mark.parametrize("multiple", [4, 16])
@pytest.mark.parametrize("tile_size", [3, 5, 9, 17, 21])
def test_hand_made_tilings_that_leave_gaps_are_refused(tile_size, multiple):
    config = TilingConfig(tile_size=tile_size, halo=tile_size // 8, blend=tile_size // 8)
    out, error = _outcome(lambda: _coverage(config, multiple))
    if error is not None:
        assert "leave gaps" in error
        return
    assert np.all(out == 1.0)


def test_fit_tiling_rounds_up_and_keeps_the_default():
    assert fit_tiling(512, 16) == TilingConfig(512, 32, 32)
    assert fit_tiling(37, 4).tile_size == 40
    assert fit_tiling(100, 16, flip_tta=True).flip_tta
    tile, _, _ = plan_tiles((300, 300), fit_tiling(70, 16), 16)
    assert tile == (80, 80)


@pytest.mark.parametrize("bad", [0, -512, 2.5, True, "512"])
def test_fit_tiling_refuses_non_sizes(bad):
    with pytest.raises(SemisegInputError, match="tile size"):
        fit_tiling(bad, 4)


def test_tiling_config_errors_are_input_errors():
    with pytest.raises(SemisegInputError, match="tile_size 0"):
        TilingConfig(tile_size=0, halo=0, blend=0)
    with pytest.raises(SemisegInputError, match="halo"):
        TilingConfig(tile_size=64, halo=-1, blend=0)
