"""PPN-auxnet specifics beyond the contract: two optimisers, size prior, tiling, decoding."""

import dataclasses

import numpy as np
import pytest
import torch
from skimage.segmentation import relabel_sequential

from napari_semiseg.data import PatchSampler, SamplerConfig
from napari_semiseg.engine import TrainConfig, train
from napari_semiseg.engine.loop import _to_tensors
from napari_semiseg.evaluation import evaluate
from napari_semiseg.inference import TilingConfig, run, segment
from napari_semiseg.inference.postprocess import join_cut_objects
from napari_semiseg.inference.scale import resize_image, resize_labels
from napari_semiseg.methods import METHODS, build_method
from napari_semiseg.methods.ppn_auxnet import PPNAuxConfig, auto_stride
from napari_semiseg.models import UNetConfig
from napari_semiseg.models.ppn import PPNOutput

TINY = UNetConfig(base_channels=4, depth=2, dropout=0.0)


def _method(**settings):
    torch.manual_seed(0)
    return build_method("ppn-auxnet", settings, TINY, 1, "cpu")


def _batch(data, seed=0):
    sampler = PatchSampler(data, SamplerConfig(patch_size=32, margin=4))
    rng = np.random.default_rng(seed)
    batch = _to_tensors(sampler.labelled_batch(rng, 2), torch.device("cpu"))
    batch.update(_to_tensors(sampler.unlabelled_batch(rng, 2), torch.device("cpu"), "unlabelled_"))
    return batch


def test_registered_with_a_form_friendly_config():
    assert METHODS["ppn-auxnet"].Config is PPNAuxConfig
    for field in PPNAuxConfig.__dataclass_fields__.values():
        assert "help" in field.metadata


def test_two_parameter_groups_with_their_own_learning_rates():
    method = _method(aux_lr=2e-3, main_lr=5e-4)
    main, aux = method.parameters_to_optimize()
    assert (main["lr"], aux["lr"]) == (5e-4, 2e-3)
    ids_main = {id(p) for p in main["params"]}
    ids_aux = {id(p) for p in aux["params"]}
    assert not ids_main & ids_aux
    assert ids_main == {id(p) for p in method.main.parameters()}
    assert ids_aux == {id(p) for p in method.aux.parameters()}
    assert "lr" not in _method().parameters_to_optimize()[0]  # main follows the training lr


def test_each_loss_reaches_only_its_own_network(toy_data):
    method = _method()
    method.on_training_data(toy_data.summary())
    method.progress = 0.6  # transfer terms fully on
    method.train()
    main_loss, aux_loss, terms = method.network_losses(_batch(toy_data))
    assert terms["aux_to_main"] > 0
    assert terms["main_to_aux"] > 0
    main_params, aux_params = list(method.main.parameters()), list(method.aux.parameters())
    grads = torch.autograd.grad(main_loss, aux_params, allow_unused=True, retain_graph=True)
    assert all(g is None or not g.any() for g in grads)
    grads = torch.autograd.grad(aux_loss, main_params, allow_unused=True)
    assert all(g is None or not g.any() for g in grads)


def test_size_prior_and_stride_follow_the_training_data(toy_data):
    method = _method()
    assert method.cell_radius() == 8.0  # nothing known yet
    method.on_training_data({"median_cell_area": float(np.pi * 30.0**2)})
    assert method.cell_radius() == pytest.approx(30.0)
    assert method.main.stride == 16
    clone = _method()
    clone.load_state_dict(method.state_dict())  # saved with the weights
    clone.on_training_data({"median_cell_area": 100.0})  # continued training keeps them
    assert clone.main.stride == 16
    assert clone.cell_radius() == pytest.approx(30.0)
    fixed = _method(cell_diameter=10.0, stride=4)
    fixed.on_training_data({"median_cell_area": 5000.0})
    assert fixed.cell_radius() == 5.0
    assert fixed.main.stride == 4
    assert [auto_stride(r) for r in (2.0, 6.2, 12.0, 30.0, 100.0)] == [4, 4, 8, 16, 16]


def test_preview_layers(toy_data):
    method = _method(score_threshold=0.1, cell_diameter=10.0)
    method.eval()
    x = torch.from_numpy(toy_data.images[0].image[None, :, :48, :40])
    maps = method.preview(x)
    required = {
        "probabilities", "foreground", "instances", "proposals_points", "offsets_vectors",
        "score", "aux_foreground", "aux_border", "overlap",
    }  # fmt: skip
    assert required <= set(maps)
    n = len(maps["proposals_points"])
    assert n > 0
    assert maps["proposals_points"].shape == (n, 3)
    assert maps["offsets_vectors"].shape == (n, 2, 2)
    assert maps["instances"].dtype == np.int32
    assert maps["score"].shape == (48, 40)
    assert maps["probabilities"].shape == (3, 48, 40)
    np.testing.assert_allclose(maps["probabilities"].sum(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(  # vectors run from the anchors to the decoded centres
        maps["offsets_vectors"][:, 0] + maps["offsets_vectors"][:, 1],
        maps["proposals_points"][:, :2],
        atol=1e-4,
    )
    # the instances layer joins cut cells as prediction does (join_contact, with the
    # foreground both heads agree on along the shared borders)
    method.config = dataclasses.replace(method.config, join_contact=0.0)
    apart = method.preview(x)["instances"]
    support = method._foreground(x)[0]
    joined = relabel_sequential(join_cut_objects(apart, 1.0, foreground=support))[0]
    np.testing.assert_array_equal(maps["instances"], joined)


def test_tiled_segmentation_equals_one_piece(toy_data):
    method = _method(score_threshold=0.2, cell_diameter=8.0)
    image = toy_data.images[1].image
    one = run(segment(method, image, 50.0, TilingConfig(tile_size=512, halo=40, blend=0)))
    tiled = run(segment(method, image, 50.0, TilingConfig(tile_size=96, halo=40, blend=0)))
    assert one.instances.max() > 3  # an untrained model still proposes at this threshold
    np.testing.assert_array_equal(one.instances, tiled.instances)
    np.testing.assert_allclose(one.maps["foreground"], tiled.maps["foreground"], atol=1e-4)


@pytest.mark.slow
def test_learns_to_find_touching_cells(toy_set, toy_data):
    config = TrainConfig(
        method="ppn-auxnet", steps=120, model=UNetConfig(base_channels=8, depth=3, dropout=0.0),
        batch_size=4, patch_size=48, lr=3e-3, device="cpu", preview_every=0, seed=0,
    )  # fmt: skip
    result = run(train(toy_data, config))
    model = result.model
    for image, truth in zip(toy_data.images, toy_set["truth"], strict=True):
        instances = run(segment(model.method, image.image, model.median_cell_area)).instances
        assert abs(int(instances.max()) - int(truth.max())) <= 2
        assert evaluate(instances, truth)["ap50"] > 0.8


def test_reference_radius_is_learnt_saved_and_optional(toy_data):
    method = _method()
    method.on_training_data(toy_data.summary())
    reference = float(method.main.cell_inradius)
    assert reference == pytest.approx(toy_data.median_cell_inradius())
    assert reference > 0
    clone = _method()
    clone.load_state_dict(method.state_dict())
    clone.on_training_data({"median_cell_inradius": 99.0})  # continued training keeps it
    assert float(clone.main.cell_inradius) == reference
    # a model file from before the reference existed loads, and predicts unscaled
    state = method.state_dict()
    del state["main"]["cell_inradius"]
    old = _method()
    old.load_state_dict(state)
    assert float(old.main.cell_inradius) == 0.0
    image = toy_data.images[1].image
    assert run(old.image_scale(image)) == 1.0


def _small_cells_and_a_large_one() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ten cells of radius 4 in the left half of a 96 x 96 image (labels, region), and
    one cell of radius 12 on its own image (labels)."""
    yy, xx = np.mgrid[:96, :96]
    small = np.zeros((96, 96), np.int32)
    for k, (y, x) in enumerate(((y, x) for y in (12, 30, 48, 66, 84) for x in (12, 30)), 1):
        small[(yy - y) ** 2 + (xx - x) ** 2 <= 16] = k
    big = ((yy - 48) ** 2 + (xx - 48) ** 2 <= 144).astype(np.int32)
    region = np.zeros((96, 96), bool)
    region[:, :48] = True
    return small, big, region


def test_a_few_painted_cells_do_not_move_the_reference_radius(monkeypatch):
    from napari_semiseg.data import TrainingData

    # image 0: a region with ten annotated cells of radius 4; images 1 and 2: one
    # painted cell of radius 12 each (known on the cell only, as with New cell)
    small, big, region = _small_cells_and_a_large_one()
    data = TrainingData.from_arrays(
        [(lab > 0).astype(np.float32) for lab in (small, big, big)],
        [small, big, big],
        [region, big > 0, big > 0],
    )
    method = _method()

    def truth(x, out=None):  # a model that sees the cells exactly
        fg = (x[:, :1] > x.mean()).float().numpy()
        return np.concatenate([fg, fg], axis=1) * 0.9 + 0.05

    monkeypatch.setattr(method, "_foreground_maps", truth)
    method.on_training_end(data)
    # ten cells against two: the region's radius (a median over images would be 12)
    assert float(method.main.cell_inradius) == pytest.approx(4.0, abs=0.5)


@pytest.mark.parametrize(("radius", "dead_zone", "factor"), [
    (7.0, 1.5, 1.0),  # 1.4x the reference: within the estimate's spread, kept as is
    (7.0, 1.25, 1.4),
    (10.0, 1.5, 2.0),  # twice the reference: resized
])  # fmt: skip
def test_images_are_resized_only_beyond_the_dead_zone(monkeypatch, radius, dead_zone, factor):
    yy, xx = np.mgrid[:128, :128]
    disk = np.zeros((128, 128), np.float32)  # four cells (enough foreground to measure)
    for y, x in ((32, 32), (32, 96), (96, 32), (96, 96)):
        disk[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = 1.0
    method = _method(rescale_dead_zone=dead_zone)
    method.main.cell_inradius.fill_(5.0)

    def seen(x, out=None):  # a model that sees the cell exactly
        fg = x[:, :1].float().numpy()
        return np.concatenate([fg, fg], axis=1) * 0.9 + 0.05

    monkeypatch.setattr(method, "_foreground_maps", seen)
    assert run(method.image_scale(disk[None])) == pytest.approx(factor, rel=0.05)


def test_one_huge_piece_of_foreground_does_not_set_the_image_scale(monkeypatch):
    yy, xx = np.mgrid[:160, :160]
    image = np.zeros((160, 160), np.float32)
    for y in (12, 36, 60):  # nine cells of the annotated size
        for x in (12, 36, 60):
            image[(yy - y) ** 2 + (xx - x) ** 2 <= 5**2] = 1.0
    method = _method()
    method.main.cell_inradius.fill_(5.0)

    def seen(x, out=None):
        fg = x[:, :1].float().numpy()
        return np.concatenate([fg, fg], axis=1) * 0.9 + 0.05

    monkeypatch.setattr(method, "_foreground_maps", seen)
    assert run(method.image_scale(image[None])) == 1.0
    # an out-of-focus glow seen as foreground: one piece with most of it, radius 40
    glow = image.copy()
    glow[(yy - 120) ** 2 + (xx - 120) ** 2 <= 40**2] = 1.0
    assert run(method.image_scale(glow[None])) == 1.0
    # a clump of touching cells with most of the foreground still gives their radius
    clump = np.zeros((160, 160), np.float32)
    for x in range(20, 141, 16):
        clump[(yy - 80) ** 2 + (xx - x) ** 2 <= 9**2] = 1.0
    assert run(method.image_scale(clump[None])) == pytest.approx(1.8, rel=0.1)
    # large cells, none of them most of the foreground, are measured as before
    large = np.zeros((160, 160), np.float32)
    for y, x in ((30, 30), (30, 110), (110, 30), (110, 110)):
        large[(yy - y) ** 2 + (xx - x) ** 2 <= 18**2] = 1.0
    assert run(method.image_scale(large[None])) == pytest.approx(3.6, rel=0.05)


def test_cells_painted_at_another_magnification_are_trained_at_the_annotated_size(
    tiny_config, monkeypatch
):
    from napari_semiseg.data import TrainingData
    from napari_semiseg.data.annotations import cell_inradii

    # image 0: ten annotated cells of radius 4 in a region; image 1: one painted cell
    # of radius 12 (known on the cell only, as with New cell); image 2: unlabelled
    small, big, region = _small_cells_and_a_large_one()
    images = [(lab > 0).astype(np.float32) for lab in (small, big, big)]
    data = TrainingData.from_arrays(images, [small, big, None], [region, big > 0, None])
    method = _method()
    view = method.training_view(data)
    assert view is not data
    shrunk = view.images[1]
    assert shrunk.shape[0] == shrunk.shape[1] == pytest.approx(32, abs=2)  # 96 / (12 / 4)
    assert cell_inradii(shrunk.labels)[0] == pytest.approx(4.0, abs=1.0)
    assert shrunk.known.dtype == bool
    assert shrunk.known.sum() == (shrunk.labels > 0).sum()
    assert shrunk.image.shape == (1, *shrunk.shape)
    for i in (0, 2):  # the annotated region and the unlabelled image: as given
        assert view.images[i].image is data.images[i].image
    assert data.images[1].shape == (96, 96)  # the data given are not changed
    # the only known background a one-pixel line on the image to shrink: the resized
    # annotations would hold none, so the images are used as given
    line = (big > 0) | (np.arange(96)[:, None] == 90)
    cells_only = TrainingData.from_arrays(images[:2], [small, big], [small > 0, line])
    assert method.training_view(cells_only) is cells_only
    # within the dead zone, or with rescaling off: the data themselves
    assert _method(rescale_dead_zone=4.0).training_view(data) is data
    assert _method(rescale=False).training_view(data) is data
    # the engine draws its patches from the view (images smaller than a patch included)
    from napari_semiseg.engine import loop

    drawn = []
    sampler = loop.PatchSampler

    def spy(train_data, *args):
        drawn.append(train_data)
        return sampler(train_data, *args)

    monkeypatch.setattr(loop, "PatchSampler", spy)
    config = tiny_config.replace(method="ppn-auxnet", steps=2, patch_size=48)
    result = run(train(data, config))
    assert result.steps == 2
    assert [im.shape for im in drawn[0].images] == [(96, 96), shrunk.shape, (96, 96)]


def test_each_image_is_segmented_at_the_annotated_scale(toy_data, monkeypatch):
    # an untrained net agrees on no foreground: the support filter is off here
    method = _method(score_threshold=0.2, cell_diameter=8.0, min_support=0.0)
    image = np.ascontiguousarray(np.repeat(np.repeat(toy_data.images[1].image, 2, 1), 2, 2))
    seen = []
    propose = method._propose_tile
    monkeypatch.setattr(method, "_propose_tile", lambda t: seen.append(t.shape) or propose(t))
    monkeypatch.setattr(method, "image_scale", lambda im, tiling=None: (yield from ()) or 2.0)
    tiling = TilingConfig(tile_size=512, halo=40, blend=0)
    result = run(segment(method, image, 50.0, tiling))
    assert result.instances.shape == result.maps["foreground"].shape == image.shape[1:]
    assert seen
    assert max(s[1] for s in seen) < image.shape[1]
    monkeypatch.undo()
    # = segmenting the image shrunk by 2 at its own scale, masks enlarged back
    shrunk = resize_image(image, (image.shape[1] // 2, image.shape[2] // 2))
    direct = run(segment(method, shrunk, 50.0, tiling)).instances
    assert direct.max() > 3
    np.testing.assert_array_equal(result.instances, resize_labels(direct, image.shape[1:]))
    off = _method(score_threshold=0.2, cell_diameter=8.0, rescale=False, min_support=0.0)
    off.load_state_dict(method.state_dict())
    off.main.cell_inradius.fill_(1.0)  # a tiny reference would ask for a large factor

    def confident(x, out=None):  # both maps confident on large squares (4-connected apart)
        yy, xx = np.mgrid[: x.shape[-2], : x.shape[-1]]
        squares = ((yy // 32 + xx // 32) % 2 == 0).astype(np.float32)
        return np.broadcast_to(squares * 0.9, (x.shape[0], 2, *x.shape[-2:])).copy()

    monkeypatch.setattr(off, "_foreground_maps", confident)
    assert run(off.image_scale(image)) > 1.0
    assert run(segment(off, image, 50.0, tiling)).instances.shape == image.shape[1:]


def test_uncovered_foreground_gets_a_proposal(monkeypatch):
    # two touching 8 px disks, one proposal whose mask covers only the first
    method = _method(cell_diameter=16.0, fill_gaps=True)
    yy, xx = np.mgrid[:96, :96]
    first = (yy - 48) ** 2 + (xx - 40) ** 2 <= 64
    second = ((yy - 48) ** 2 + (xx - 55) ** 2 <= 64) & ~first
    dense = torch.from_numpy(np.where(first | second, 6.0, -6.0)).float()[None]
    out = PPNOutput(
        score=torch.zeros(1, 24, 24), offsets=torch.zeros(1, 2, 24, 24),
        params=torch.zeros(1, 1, 24, 24), mask_features=torch.zeros(1, 8, 96, 96), dense=dense,
    )  # fmt: skip
    monkeypatch.setattr(method, "aux", lambda x: torch.full((1, 2, 96, 96), 6.0))
    r = method._window(8.0)[1]
    box = (slice(48 - r, 49 + r), slice(40 - r, 41 + r))
    centre = torch.tensor([[48.0, 40.0]], dtype=torch.float64)
    x = torch.zeros(1, 1, 96, 96)
    window = torch.from_numpy(np.where(first, 5.0, -5.0)[box]).float()[None]
    extra = method._gap_centres(out, x, centre, window, 8.0)
    assert extra.shape == (1, 2)
    assert second[int(extra[0, 0]), int(extra[0, 1])]
    covered = torch.from_numpy(np.where(first | second, 5.0, -5.0)[box]).float()[None]
    assert len(method._gap_centres(out, x, centre, covered, 8.0)) == 0


@pytest.mark.parametrize(("min_support", "kept"), [(0.0, 2), (0.5, 1)])
def test_proposals_without_foreground_support_are_dropped(monkeypatch, min_support, kept):
    from types import SimpleNamespace

    method = _method(cell_diameter=16.0, fill_gaps=False, min_support=min_support)
    monkeypatch.setattr(method, "main", lambda x: "out")
    centres = torch.tensor([[20.0, 20.0], [60.0, 60.0]])
    found = SimpleNamespace(centres=centres, scores=torch.tensor([0.9, 0.8]))
    monkeypatch.setattr(method, "_proposals", lambda *args, **kwargs: found)
    support = np.zeros((1, 96, 96), np.float32)
    support[0, 10:30, 10:30] = 0.9  # only the first centre lies in agreed foreground
    monkeypatch.setattr(method, "_foreground", lambda x, out=None: support)
    seen = []

    def windows(out, where, radius):
        seen.append(where.clone())
        return torch.zeros(len(where), 5, 5)

    monkeypatch.setattr(method, "_tile_windows", windows)
    proposals = method._propose_tile(np.zeros((1, 96, 96), np.float32))
    assert len(proposals.centres) == kept
    np.testing.assert_array_equal(proposals.centres[0], [20.0, 20.0])
    assert len(seen[0]) == kept  # masks are made only for the kept proposals


def test_faint_objects_are_dropped_like_the_other_methods(monkeypatch):
    # the contrast filter of PostprocessConfig applies to the proposals' masks too
    from napari_semiseg.inference import PostprocessConfig
    from napari_semiseg.methods import ppn_auxnet

    image = np.zeros((1, 64, 64), np.float32)
    image[0, 8:20, 8:20] = 0.8  # a cell
    image[0, 40:52, 40:52] = 0.02  # a blob that barely stands out
    labels = np.zeros((64, 64), np.int32)
    labels[8:20, 8:20], labels[40:52, 40:52] = 1, 2

    def proposals_masks(*args, **kwargs):
        yield from ()
        return labels.copy(), (labels > 0).astype(np.float32)

    monkeypatch.setattr(ppn_auxnet, "segment_from_proposals", proposals_masks)
    method = _method(rescale=False)
    kept = PostprocessConfig(reference_contrast=(0.8,), min_contrast=0.1)
    result = run(segment(method, image, 144.0, postprocess=kept)).instances
    assert np.unique(result).tolist() == [0, 1]
    assert (result[8:20, 8:20] == 1).all()
    off = PostprocessConfig(reference_contrast=(0.8,), min_contrast=0.0)
    assert np.unique(run(segment(method, image, 144.0, postprocess=off)).instances).size == 3
