"""PPN-auxnet: instances from position proposals, regularised by a small auxiliary net.

METHODS.md section 6 (the "W-LOI Net" seed note). The main model, a U-Net with
a Position Proposal Network head and a full-resolution dynamic mask head fed
with coordinates relative to each proposal and a Gaussian size prior, predicts
one soft mask per cell; its semantic output is the maximum over the instance
logits. A small dilated network of a different architecture predicts
foreground and borders. On unknown pixels each network learns from the other
(aux -> main by a confidence-weighted BCE through the max-over-instances
semantics, main -> aux by the linear soft-label loss S7, borders by the Sobel
filter of the instance masks), and agreement and overlap penalties keep the
instances from over-segmenting.

Both networks step every iteration: ``parameters_to_optimize`` returns two
parameter groups with their own learning rate. The parameters are disjoint and
every cross-network target is detached, so the engine's single AdamW over the
summed loss is exactly two AdamW optimisers on their own losses (only
gradient-norm clipping, when on, is computed over both together).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import relabel_sequential
from torch import nn

from ..data.annotations import BORDER, IGNORE, INTERIOR
from ..errors import SemisegInputError
from ..inference.postprocess import drop_faint_objects, join_cut_objects
from ..inference.ppn_instances import TileProposals, segment_from_proposals
from ..inference.proposals import (
    Proposals,
    find_proposals,
    paste_windows,
    window_coordinates,
)
from ..inference.proposals import window_radius as _window_radius
from ..inference.scale import (
    FOREGROUND_LEVEL,
    agreed_foreground,
    inscribed_radius,
    mosaic,
    resize_image,
    resize_labels,
    sample_windows,
    scale_factor,
    scaled_shape,
)
from ..inference.tiling import TileDone, predict_tiled
from ..losses import binary_cross_entropy, linear_soft_loss
from ..losses.mutual import agreement_loss, confident_bce, inner_border, overlap_loss
from ..losses.ppn import balanced_bce, instance_centroids, offset_loss, ppn_targets
from ..models import UNetConfig
from ..models.aux_heads import AuxNet
from ..models.ppn import PPNNet, PPNOutput
from .base import Batch, Method, MethodConfig, StepOutput, dim_contrast_field, setting

#: Cell radius assumed before any annotated cell has been seen.
DEFAULT_RADIUS = 8.0
#: Semantic logit of pixels no proposal window reaches.
_FLOOR = -4.0
#: No per-image resizing when one object holds this share of the agreed foreground.
ONE_PIECE_SHARE = 0.5


@dataclass(frozen=True)
class PPNAuxConfig(MethodConfig):
    """Hyper-parameters of PPN-auxnet (defaults from METHODS.md section 6 unless noted)."""

    cell_diameter: float = field(
        default=0.0,
        metadata=setting(0, 500, 1, "typical cell diameter in px (0 = from the labels)"),
    )
    stride: int = field(
        default=0,
        metadata=setting(0, 16, 1, "PPN grid stride, power of 2 (0 = from the cell size)"),
    )
    score_threshold: float = field(
        default=0.5, metadata=setting(0.05, 0.95, 0.05, "position score of a proposal")
    )
    votes: bool = field(
        default=False,
        metadata={"help": "cluster the centre votes of all anchors (else 3x3 score peaks)"},
    )
    merge_distance: float = field(
        default=0.5, metadata=setting(0, 2, 0.05, "merge proposals closer than this (cell radii)")
    )
    join_contact: float = field(
        default=1.0,
        metadata=setting(
            0, 4, 0.1,
            "join touching instances sharing a border this many times the smaller one's "
            "diameter, when their union is convex (0 = never): a nucleus cut by two proposals",
        ),
    )  # fmt: skip
    join_convex_contact: float = field(
        default=0.5,
        metadata=setting(
            0, 4, 0.05,
            "join touching instances sharing a shorter border, down to this many times the "
            "smaller one's diameter, when their union is very convex (solidity 0.9): an "
            "elongated nucleus cut across (0 = off)",
        ),
    )  # fmt: skip
    border_reach: float = field(
        default=0.5,
        metadata=setting(
            0, 2, 0.05,
            "keep proposals whose centre lies this far outside the image (cell radii): "
            "cells cut by the image border",
        ),
    )  # fmt: skip
    max_proposals: int = field(
        default=96, metadata=setting(1, 1000, 1, "proposals per training patch (cost cap)")
    )
    jitter: float = field(
        default=0.1, metadata=setting(0, 1, 0.05, "jitter of annotated centres (cell radii)")
    )
    window_sigmas: float = field(
        default=3.0, metadata=setting(1, 6, 0.5, "mask window half-width in prior sigmas")
    )
    predict_window_sigmas: float = field(
        default=4.0,
        metadata=setting(
            0, 8, 0.5,
            "mask window half-width at prediction, in prior sigmas (0 = the training "
            "window): masks of cells larger than the annotated ones reach their rims",
        ),
    )  # fmt: skip
    prior_strength: float = field(
        default=1.0, metadata=setting(0, 10, 0.1, "kappa of the Gaussian size prior")
    )
    dense_weight: float = field(
        default=1.0, metadata=setting(0, 10, 0.1, "dense foreground head (deep supervision)")
    )
    offset_weight: float = field(default=1.0, metadata=setting(0, 10, 0.1, "offset regression"))
    transfer_weight: float = field(
        default=1.0, metadata=setting(0, 10, 0.1, "mutual transfer on unknown pixels")
    )
    warmup: float = field(
        default=0.1,
        metadata=setting(0, 1, 0.05, "fraction of training without unlabelled patches"),
    )
    transfer_rampup: float = field(
        default=0.2, metadata=setting(0, 1, 0.05, "fraction of training to ramp the transfer up")
    )
    agreement_weight: float = field(
        default=0.5, metadata=setting(0, 10, 0.1, "sum of instances = semantics")
    )
    overlap_weight: float = field(default=1.0, metadata=setting(0, 10, 0.1, "overlap penalty"))
    border_weight: float = field(
        default=0.5, metadata=setting(0, 10, 0.1, "Sobel border transfer")
    )
    confidence_gamma: float = field(
        default=1.0, metadata=setting(0, 4, 0.5, "exponent of the confidence weight |2q-1|")
    )
    aux_channels: int = field(
        default=0, metadata=setting(0, 64, 4, "auxiliary-net width (0 = backbone width, max 16)")
    )
    unlabelled_patches: int = field(
        default=2, metadata=setting(0, 64, 1, "unlabelled patches used per step (cost cap)")
    )
    main_lr: float = field(
        default=0.0, metadata=setting(0, 0.1, 1e-4, "main-model lr (0 = the training lr)")
    )
    aux_lr: float = field(default=1e-3, metadata=setting(1e-5, 0.1, 1e-4, "auxiliary-net lr"))
    fill_gaps: bool = field(
        default=True,
        metadata={
            "help": "add a proposal in each cell-sized piece of confident foreground that no "
            "mask covers (touching cells with one score peak)"
        },
    )
    rescale: bool = field(
        default=True,
        metadata={
            "help": "predict each image resized so its cells look as large as the annotated "
            "ones (size measured on the dense foreground)"
        },
    )
    rescale_dead_zone: float = field(
        default=1.5,
        metadata=setting(
            1.0, 4.0, 0.05,
            "resize an image only when its cells measure this many times larger or smaller "
            "than the annotated ones (the size estimate varies by up to 1.46x between images "
            "of one scale)",
        ),
    )  # fmt: skip
    rescale_on_unseen: bool = field(
        default=False,
        metadata={
            "help": "keep rescaling when most pixels look like nothing annotated (their "
            "foreground maps, hence the size estimate, are unreliable there)"
        },
    )
    # on: of the 542 nuclei one DSB model missed outright, 222 had no position score
    # above 0.5 anywhere inside (dim nuclei; the ten annotated ones were bright)
    dim_contrast: float = dim_contrast_field(0.2)
    min_support: float = field(
        default=0.0,
        metadata=setting(
            0.0, 1.0, 0.05,
            "drop proposals whose centre has a lower foreground probability on which the "
            "dense head and the aux net agree (0 = keep all)",
        ),
    )  # fmt: skip


class PPNAuxNet(Method):
    """Position proposals + dynamic instance masks, co-trained with a small auxiliary net."""

    name = "ppn-auxnet"
    label = "PPN + auxiliary net (instances)"
    description = (
        "Predicts cell centres (Position Proposal Network) and one mask per cell from "
        "coordinates relative to it, with a size prior; a small second network of another "
        "architecture exchanges foreground and borders with it on unlabelled pixels. "
        "Separates touching cells without watershed."
    )
    Config = PPNAuxConfig
    uses_unlabelled = True
    core_targets = False  # the auxiliary net learns the thin Sobel border

    def __init__(self, config, model_config: UNetConfig, in_channels: int, device="cpu"):
        super().__init__(config, model_config, in_channels, device)
        self.main = PPNNet(in_channels, model_config, stride=config.stride or 4)
        width = config.aux_channels or min(model_config.base_channels, 16)
        self.aux = AuxNet(in_channels, width)
        self._area_from_data = False

    # model files from before the dimmed patches (continued training keeps their augmentation)
    former_defaults: ClassVar[dict[str, Any]] = {"dim_contrast": 1.0}
    #: Dimmed patches also where the annotation holds faint cells: without them on CTC
    #: (dimmest annotated cell 0.11 of the median) the score head missed dim nuclei
    #: (docs/ppn_auxnet.md, change 29); its objects are all held to the contrast bar.
    dim_with_faint_annotation = True

    # -- geometry ------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        """The main (PPN) model and the auxiliary net."""
        return {"main": self.main, "aux": self.aux}

    def parameters_to_optimize(self) -> list[dict[str, Any]]:
        """Two parameter groups, one per network, each with its own learning rate."""
        main: dict[str, Any] = {"params": [p for p in self.main.parameters() if p.requires_grad]}
        if self.config.main_lr > 0:
            main["lr"] = self.config.main_lr
        aux = {"params": [p for p in self.aux.parameters() if p.requires_grad]}
        return [main, {**aux, "lr": self.config.aux_lr}]

    def cell_radius(self, median_area: float = 0.0) -> float:
        """Typical cell radius r in pixels: configured, learnt, given, or a default.

        Parameters
        ----------
        median_area : float
            Fallback median cell area when neither the configuration nor
            training gave one.

        Returns
        -------
        float
        """
        if self.config.cell_diameter > 0:
            return self.config.cell_diameter / 2.0
        area = float(self.main.cell_area) or median_area
        return math.sqrt(area / math.pi) if area > 0 else DEFAULT_RADIUS

    def _window(self, radius: float) -> tuple[float, int]:
        """Prior sigma and mask-window half-width for cells of ``radius``.

        In eval mode the window is ``predict_window_sigmas`` wide when set
        (docs/ppn_auxnet.md, change 28), else ``window_sigmas`` as in training.
        """
        sigma = radius  # METHODS.md: sigma = r = sqrt(A_med / pi)
        sigmas = self.config.window_sigmas
        if not self.main.training and self.config.predict_window_sigmas > 0:
            sigmas = self.config.predict_window_sigmas
        return sigma, _window_radius(sigma, sigmas)

    #: No per-image rescaling where most pixels look like nothing annotated
    #: (``rescale_on_unseen`` keeps it): the size estimate reads the networks'
    #: foreground maps on every image, and on pixels like nothing they were
    #: shown those maps are arbitrary. On the DSB brightfield set (bright empty
    #: background, only dark halos marked) the aux net of one model called the
    #: whole background foreground, every image was shrunk 8 times and AP50
    #: fell from 0.457 (no rescaling) to 0.034 (docs/ppn_auxnet.md, change 18).
    off_where_unseen = ("rescale",)

    @torch.no_grad()
    def on_training_data(self, summary: dict[str, Any]) -> None:
        """Take the median annotated cell area of the training data for the size prior.

        A model that already has one (training continued from a checkpoint)
        keeps it, and its grid stride: its heads were trained with them.
        """
        inradius = float(summary.get("median_cell_inradius", 0.0) or 0.0)
        if inradius > 0 and float(self.main.cell_inradius) <= 0:
            self.main.cell_inradius.fill_(inradius)
        area = float(summary.get("median_cell_area", 0.0) or 0.0)
        if area <= 0:
            return
        self._area_from_data = True
        if float(self.main.cell_area) > 0:
            return
        self.main.cell_area.fill_(area)
        if not self.config.stride:
            self.main.set_stride(auto_stride(self.cell_radius(), self.main.feature_stride))

    def training_view(self, data: Any) -> Any:
        """Annotated images resized so their cells look like the typical annotated cell.

        The masks are learnt against one size prior, that of the annotated
        cells, and prediction resizes every image to it (:meth:`image_scale`).
        Cells annotated on an image of another magnification (a user paints
        a few missed large nuclei and presses **Continue**) would otherwise
        teach masks of another size around the same prior: three painted DSB
        nuclei of about twice the annotated radius (1139-1546 px for the three,
        against a median annotated cell of 119 px) cost 0.14 AP50
        (docs/benchmarks.md, "Painting missed cells"). Each image whose
        annotated cells' median inscribed radius differs from the median over
        all annotated cells by more than ``rescale_dead_zone`` is resized by
        that ratio (image bilinear, labels and known mask nearest), as
        prediction would resize it. Off with ``rescale``. Where the resized
        annotations would no longer be valid training data (a one-pixel
        background scribble, the only one, lost in shrinking), the images are
        used as given.

        Parameters
        ----------
        data : TrainingData
            The training data as given.

        Returns
        -------
        TrainingData
            ``data`` itself when no image needs resizing, else a new object
            (unchanged images share their arrays with ``data``).
        """
        from ..data import TrainingData, TrainingImage
        from ..data.annotations import cell_inradii

        reference = data.median_cell_inradius()
        if not self.config.rescale or reference <= 0:
            return data
        items, resized = [], False
        for item in data.images:
            factor = 1.0
            if item.labels is not None and item.labels.any():
                radius = float(np.median(cell_inradii(item.labels)))
                factor = scale_factor(radius, reference, self.config.rescale_dead_zone)
            if factor == 1.0:  # a copy: the new object sets its own targets and weights
                items.append(TrainingImage(item.name, item.image, item.labels, item.known))
                continue
            shape = scaled_shape(item.shape, factor)
            known = None if item.known is None else resize_labels(item.known, shape).astype(bool)
            labels = resize_labels(item.labels, shape).astype(np.int32)
            items.append(TrainingImage(item.name, resize_image(item.image, shape), labels, known))
            resized = True
        if not resized:
            return data
        try:
            return TrainingData(items, data.w0, data.sigma, data.normalization)
        except SemisegInputError:  # e.g. the only background scribble thinned away
            return data

    @torch.no_grad()
    def on_training_end(self, data: Any, max_images: int = 8, margin: int = 32) -> None:
        """Measure the reference radius on the annotated cells with the trained model.

        The size of an image's cells is measured on thresholded foreground
        maps (:meth:`image_scale`, same rule), which sit inside the true outlines by an
        amount that depends on the model (measured on the maximum of the two
        maps: 0.82 of the true radius on CTC nuclei after 76 steps, 0.67 on
        the synthetic test cells). The same
        measure, taken on the annotated images where the foreground meets the
        known pixels, replaces the radius of the annotations as the
        reference, so the bias cancels in the ratio. Nothing changes when the
        model finds no confident foreground there.

        The images' radii are combined by a median over the annotated cells
        (each image's radius counted once per cell): an image where a user
        painted one missed cell counts as one cell, not as much as a region of
        ten (three missed cells painted on three CTC images, where the model's
        confident foreground measured smaller, moved a median over images; every
        image was then shrunk too much before segmenting and AP50 fell from 0.91
        to 0.42; docs/ppn_auxnet.md, change 21).
        """
        radii, weights = [], []
        annotated = [im for im in data.images if im.is_annotated and im.labels is not None]
        for item in annotated[:max_images]:
            if not item.labels.any():
                continue
            rows, cols = np.nonzero(item.known)
            y0, x0 = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
            y1 = min(rows.max() + 1 + margin, item.known.shape[0])
            x1 = min(cols.max() + 1 + margin, item.known.shape[1])
            window = np.ascontiguousarray(item.image[:, y0:y1, x0:x1])
            maps = self._foreground_maps(torch.from_numpy(window[None]).to(self.device))[0]
            confident = agreed_foreground(window, maps[0], maps[1]) & item.known[y0:y1, x0:x1]
            radius = inscribed_radius(confident)
            if radius > 0:
                radii.append(radius)
                weights.append(np.count_nonzero(np.unique(item.labels[item.known])))
        if radii and sum(weights) > 0:  # a median over cells: each image once per cell
            self.main.cell_inradius.fill_(float(np.median(np.repeat(radii, weights))))

    def _foreground_maps(self, x: torch.Tensor, out: PPNOutput | None = None) -> np.ndarray:
        """Foreground probabilities of the dense head and of the aux net, ``(B, 2, Y, X)``.

        ``out``: the main model's outputs for ``x`` when already computed.
        """
        h, w = x.shape[-2:]
        with torch.no_grad():
            out = self.main(x) if out is None else out
            dense = out.dense[:, :h, :w].float()
            aux = self.aux(x)[:, 0].float()
        return torch.sigmoid(torch.stack([dense, aux], dim=1)).cpu().numpy()

    def _foreground(self, x: torch.Tensor, out: PPNOutput | None = None) -> np.ndarray:
        """Foreground both the dense head and the aux net agree on, ``(B, Y, X)``.

        The smaller of the two probabilities: either map alone can call a dim
        background foreground after a short run (the aux net of one DSB model
        put the size estimate of 75 % of the images off by more than x1.5).
        ``out``: the main model's outputs for ``x`` when already computed.
        """
        return self._foreground_maps(x, out).min(axis=1)

    @torch.no_grad()
    def _update_area(self, areas: torch.Tensor) -> None:
        """Running estimate of the median cell area from the patches (fallback only).

        Used when the engine gave no data statistics; patch areas are biased
        (augmentation, cells mirrored at image edges), so the data median wins.
        """
        if areas.numel() == 0 or self._area_from_data:
            return
        median = areas.float().median()
        if float(self.main.cell_area) <= 0:
            self.main.cell_area.copy_(median)
        else:
            self.main.cell_area.mul_(0.95).add_(0.05 * median)

    # -- training --------------------------------------------------------------------
    def _training_proposals(
        self, out: PPNOutput, labels: torch.Tensor, cells: list, radius: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Annotated centres (jittered) plus predicted proposals away from annotated cells."""
        config, h, w = self.config, labels.shape[-2], labels.shape[-1]
        # at most about twice as many proposals as cells fit in the patch
        cap = min(config.max_proposals, math.ceil(2.0 * h * w / (math.pi * radius**2)))
        index, centres, match = [], [], []
        for i, c in enumerate(cells):
            order = torch.randperm(len(c.ids), device=labels.device)[:cap]
            gt = c.centres[order] + config.jitter * radius * torch.randn_like(c.centres[order])
            found = self._proposals(out, i, (h, w), radius, cap)
            pred = self._free_proposals(found, labels[i], c.centres, radius, (h, w))
            pred = pred[: cap - len(order)]
            index.append(torch.full((len(gt) + len(pred),), i, dtype=torch.long))
            centres += [gt, pred]
            match += [c.ids[order], torch.zeros(len(pred), dtype=torch.long, device=labels.device)]
        return torch.cat(index).to(labels.device), torch.cat(centres), torch.cat(match)

    def _free_proposals(
        self, found: Proposals, labels: torch.Tensor, gt: torch.Tensor, radius: float, shape
    ) -> torch.Tensor:
        """Predicted centres inside the patch, off annotated cells and away from their centres."""
        pixel = torch.round(found.centres).long()
        keep = (pixel[:, 0] >= 0) & (pixel[:, 0] < shape[0])
        keep &= (pixel[:, 1] >= 0) & (pixel[:, 1] < shape[1])
        pixel = pixel.clamp(min=0)
        pixel[:, 0] = pixel[:, 0].clamp(max=shape[0] - 1)
        pixel[:, 1] = pixel[:, 1].clamp(max=shape[1] - 1)
        keep &= labels[pixel[:, 0], pixel[:, 1]] == 0
        if len(gt) and len(found):
            keep &= (
                torch.cdist(found.centres, gt).min(1).values >= self.config.merge_distance * radius
            )
        return found.centres[keep]

    def _masks(self, out: PPNOutput, index: torch.Tensor, centres: torch.Tensor, radius: float):
        sigma, r_window = self._window(radius)
        _, ys, xs = window_coordinates(centres, r_window)
        logits = self.main.instance_logits(
            out, index, centres, ys, xs, radius, sigma, self.config.prior_strength
        )
        return logits.float(), ys, xs  # float32 for the losses under autocast

    def training_step(self, batch: Batch, step: int) -> StepOutput:
        """Main and auxiliary losses on labelled and unlabelled patches (summed)."""
        main_loss, aux_loss, terms = self.network_losses(batch)
        return StepOutput(main_loss + aux_loss, terms)

    def network_losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """The main model's and the auxiliary net's losses for one batch.

        Every target one network takes from the other is detached, so
        ``main_loss`` has gradients only in the main model and ``aux_loss``
        only in the auxiliary net.

        Parameters
        ----------
        batch : dict of str to torch.Tensor
            See :mod:`napari_semiseg.methods.base`.

        Returns
        -------
        main_loss, aux_loss : torch.Tensor
            Scalars.
        terms : dict of str to float
            Every loss term, for logging.
        """
        config = self.config
        keys = ("image", "labels", "known", "target")
        ramp = config.transfer_weight * _rampup(
            self.progress, config.warmup, config.transfer_rampup
        )
        n_extra = config.unlabelled_patches if ramp > 0 else 0
        if "unlabelled_image" in batch and n_extra > 0:
            image, labels, known, target = (
                torch.cat([batch[k], batch["unlabelled_" + k][:n_extra]]) for k in keys
            )
        else:
            image, labels, known, target = (batch[k] for k in keys)
        shape = tuple(labels.shape)
        cells = [instance_centroids(lab) for lab in labels]
        n_labelled = batch["image"].shape[0]
        self._update_area(torch.cat([c.areas[~c.cut] for c in cells[:n_labelled]]))
        radius = self.cell_radius()

        out = self.main(image)
        grid = tuple(out.score.shape[-2:])
        stride = self.main.stride
        r_pos = max(stride, 0.3 * radius)
        targets = ppn_targets(labels, known, grid, stride, r_pos, cells, config.votes)
        l_score = balanced_bce(out.score, targets.score, targets.valid)
        l_offset = offset_loss(out.offsets, targets)

        index, centres, match = self._training_proposals(out, labels, cells, radius)
        z, ys, xs = self._masks(out, index, centres, radius)
        m = torch.sigmoid(z)
        l_mask, l_dice = self._mask_losses(z, m, index, ys, xs, labels, known, match)

        z_sem = paste_windows(z, index, ys, xs, shape, "amax", _FLOOR)
        s = torch.sigmoid(z_sem)
        mask_sum = paste_windows(m, index, ys, xs, shape, "sum")
        mask_sq = paste_windows(m * m, index, ys, xs, shape, "sum")
        border_main = paste_windows(inner_border(m), index, ys, xs, shape, "amax", 0.0)
        covered = paste_windows(torch.ones_like(m), index, ys, xs, shape, "amax", 0.0)

        aux = self.aux(image).float()
        a, b_a = torch.sigmoid(aux[:, 0]), torch.sigmoid(aux[:, 1])
        k_mask = (target != IGNORE).float()
        u_mask = 1.0 - k_mask
        fg = ((target == INTERIOR) | (target == BORDER)).float()
        border_gt = (target == BORDER).float()

        l_sem = binary_cross_entropy(s, fg, k_mask)
        h, w = shape[1:]
        l_dense = F.binary_cross_entropy_with_logits(
            out.dense[:, :h, :w].float(), fg, weight=k_mask, reduction="sum"
        ) / (k_mask.sum() + 1e-8)
        l_a2m = confident_bce(s, a.detach(), u_mask * covered, config.confidence_gamma)
        semantic = torch.where(k_mask > 0, fg, a.detach())
        l_agr = agreement_loss(mask_sum, semantic)
        l_ovl = overlap_loss(mask_sum, mask_sq)
        l_aux = binary_cross_entropy(a, fg, k_mask) + binary_cross_entropy(b_a, border_gt, k_mask)
        # main -> aux only where the main model has an opinion (inside a proposal window)
        transfer = u_mask * covered
        l_m2a = linear_soft_loss(a, s.detach(), transfer, config.confidence_gamma)
        l_border = linear_soft_loss(b_a, border_main.detach(), transfer, config.confidence_gamma)

        main_loss = (
            l_score + config.offset_weight * l_offset + l_sem + l_mask + l_dice
            + config.dense_weight * l_dense
            + ramp * l_a2m + config.agreement_weight * l_agr + config.overlap_weight * l_ovl
        )  # fmt: skip
        aux_loss = l_aux + ramp * (l_m2a + config.border_weight * l_border)
        self._remember(image, index, centres, s, a)
        terms = {
            "main": main_loss, "aux": aux_loss, "score": l_score, "offset": l_offset,
            "semantic": l_sem, "dense": l_dense, "mask": l_mask, "dice": l_dice,
            "aux_to_main": l_a2m, "main_to_aux": l_m2a, "border": l_border,
            "agreement": l_agr, "overlap": l_ovl,
        }  # fmt: skip
        logged = {k: float(v.detach()) for k, v in terms.items()}
        logged["proposals"] = float(len(index)) / shape[0]
        return main_loss, aux_loss, logged

    @staticmethod
    def _mask_losses(z, m, index, ys, xs, labels, known, match):
        """Per-proposal BCE on known window pixels and Dice for matched proposals."""
        h, w = labels.shape[-2:]
        if len(index) == 0:
            zero = z.sum() * 0.0
            return zero, zero
        rows, cols = ys.clamp(0, h - 1)[:, :, None], xs.clamp(0, w - 1)[:, None, :]
        inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
        idx = index.view(-1, 1, 1)
        weight = known[idx, rows, cols].float() * inside
        target = (labels[idx, rows, cols] == match.view(-1, 1, 1)) & (match.view(-1, 1, 1) > 0)
        target = target.float()
        bce = F.binary_cross_entropy_with_logits(z.float(), target, reduction="none")
        l_bce = (bce * weight).sum() / (weight.sum() + 1e-8)
        matched = match > 0
        if not bool(matched.any()):
            return l_bce, z.sum() * 0.0
        wm, mm, tm = weight[matched], m[matched].float(), target[matched]
        inter = (wm * mm * tm).sum((1, 2))
        denom = (wm * mm).sum((1, 2)) + (wm * tm).sum((1, 2))
        return l_bce, (1.0 - (2.0 * inter + 1.0) / (denom + 1.0)).mean()

    def _remember(self, image, index, centres, s, a) -> None:
        first = index == 0
        points = centres[first].detach().cpu().numpy()
        self.batch_previews = {
            "sample_proposals_points": np.concatenate(
                [points, np.ones((len(points), 1))], axis=1
            ).astype(np.float32),
            "sample_semantic": s[0].detach().float().cpu().numpy(),
            "sample_aux_foreground": a[0].detach().float().cpu().numpy(),
        }

    # -- inference --------------------------------------------------------------------------
    def _proposals(self, out: PPNOutput, i: int, shape, radius: float, limit: int) -> Proposals:
        """Merged proposals of image ``i`` whose centres lie inside ``shape``."""
        config = self.config
        return find_proposals(
            out.score[i], out.offsets[i], self.main.stride, config.score_threshold,
            config.merge_distance * radius, limit, not config.votes, tuple(shape),
        )  # fmt: skip

    @torch.no_grad()
    def _infer(self, x: torch.Tensor, limit: int = 4096) -> dict[str, Any]:
        """Forward pass, proposals (merged) and pasted maps for a batch ``(B, C, Y, X)``."""
        shape = (x.shape[0], x.shape[-2], x.shape[-1])
        radius = self.cell_radius()
        out = self.main(x)
        found = []
        for i in range(shape[0]):
            found.append(self._proposals(out, i, shape[1:], radius, limit))
        index = torch.cat(
            [torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(found)]
        ).to(x.device)
        centres = torch.cat([p.centres for p in found])
        z, ys, xs = self._masks(out, index, centres, radius)
        m = torch.sigmoid(z)
        z_sem = paste_windows(z, index, ys, xs, shape, "amax", _FLOOR)
        mask_sum = paste_windows(m, index, ys, xs, shape, "sum")
        mask_max = paste_windows(m, index, ys, xs, shape, "amax", 0.0)
        border = paste_windows(inner_border(m), index, ys, xs, shape, "amax", 0.0)
        return {
            "out": out, "found": found, "z": z, "index": index, "centres": centres,
            "z_sem": z_sem, "border": border, "overlap": mask_sum - mask_max,
        }  # fmt: skip

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Three-class logits (background, interior, border) ``(B, 3, Y, X)``.

        The foreground is the max-over-instances semantics; the border is the
        stronger of the soft Sobel border of the instance masks and the hard
        border between the argmax instances.
        """
        maps = self._infer(x)
        s = torch.sigmoid(maps["z_sem"])
        labels = self._argmax_labels(maps, tuple(s.shape))
        hard = _label_borders(labels)
        border = torch.maximum(maps["border"], hard)
        probs = torch.stack([1.0 - s, s * (1.0 - border), s * border], dim=1)
        return torch.log(probs.clamp_min(1e-6))

    @staticmethod
    def _argmax_labels(maps: dict[str, Any], shape: tuple[int, int, int]) -> torch.Tensor:
        """Instance ids ``(B, Y, X)``: ``k + 1`` for the proposal of highest logit, 0 = none."""
        z, index = maps["z"], maps["index"]
        if len(index) == 0:
            return torch.zeros(shape, dtype=torch.long, device=maps["z_sem"].device)
        _, ys, xs = window_coordinates(maps["centres"], z.shape[-1] // 2)
        h, w = shape[1:]
        rows, cols = ys.clamp(0, h - 1)[:, :, None], xs.clamp(0, w - 1)[:, None, :]
        best = maps["z_sem"][index.view(-1, 1, 1), rows, cols]
        ids = torch.arange(1, len(index) + 1, device=z.device, dtype=z.dtype).view(-1, 1, 1)
        winners = torch.where((z >= best) & (z > 0), ids.expand_as(z), torch.zeros_like(z))
        return paste_windows(winners, index, ys, xs, shape, "amax", 0.0).long()

    @torch.no_grad()
    def preview(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Probabilities, instances, proposals, offsets, score, aux maps and overlap for ``x``."""
        maps = self._infer(x[:1])
        h, w = x.shape[-2:]
        s = torch.sigmoid(maps["z_sem"][0])
        labels = self._argmax_labels(maps, (1, h, w))
        border = torch.maximum(maps["border"], _label_borders(labels))[0]
        probs = torch.stack([1.0 - s, s * (1.0 - border), s * border])
        score = torch.sigmoid(maps["out"].score[0].float())
        stride = self.main.stride
        score = score.repeat_interleave(stride, 0).repeat_interleave(stride, 1)[:h, :w]
        aux = torch.sigmoid(self.aux(x[:1]).float())[0]
        found = maps["found"][0]
        points = torch.cat([found.centres, found.scores[:, None]], 1)
        vectors = torch.stack([found.anchors, found.centres - found.anchors], 1)
        # as at prediction: pieces of one convex cell are one instance
        support = self._foreground(x[:1], maps["out"])[0]
        joined = join_cut_objects(
            labels[0].cpu().numpy(), self.config.join_contact, foreground=support,
            convex_contact=self.config.join_convex_contact,
        )  # fmt: skip
        instances = _relabel(joined)
        return {
            "probabilities": probs.float().cpu().numpy(),
            "foreground": s.float().cpu().numpy(),
            "instances": instances,
            "proposals_points": points.float().cpu().numpy(),
            "offsets_vectors": vectors.float().cpu().numpy(),
            "score": score.cpu().numpy(),
            "aux_foreground": aux[0].cpu().numpy(),
            "aux_border": aux[1].cpu().numpy(),
            "border": maps["border"][0].float().cpu().numpy(),
            "overlap": maps["overlap"][0].float().cpu().numpy(),
            "disagreement": (s - aux[0]).abs().float().cpu().numpy(),
        }

    def _tile_windows(self, out: PPNOutput, centres: torch.Tensor, radius: float) -> torch.Tensor:
        """Mask logits ``(K, W, W)`` of proposals in one tile, 256 at a time."""
        size = 2 * self._window(radius)[1] + 1
        chunks = [torch.zeros((0, size, size))]
        for start in range(0, len(centres), 256):
            part = centres[start : start + 256]
            index = torch.zeros(len(part), dtype=torch.long, device=part.device)
            chunks.append(self._masks(out, index, part, radius)[0].float().cpu())
        return torch.cat(chunks)

    def _propose_tile(self, tile: np.ndarray) -> TileProposals:
        """Proposals of one tile (merged within the tile) with their mask-logit windows."""
        x = torch.from_numpy(tile[None]).to(self.device)
        radius = self.cell_radius()
        with torch.no_grad():
            out = self.main(x)
            found = self._proposals(out, 0, tile.shape[1:], radius, limit=None)
            centres, scores = found.centres.double().cpu(), found.scores.float().cpu()
            # where both heads see foreground: proposal support, gaps, and the join's seams
            support = self._foreground(x, out)[0]
            if self.config.min_support > 0 and len(centres):
                keep = torch.from_numpy(_values_at(support, centres.numpy()))
                keep = keep >= self.config.min_support
                centres, scores = centres[keep], scores[keep]
                found_centres = found.centres[keep.to(found.centres.device)]
            else:
                found_centres = found.centres
            windows = self._tile_windows(out, found_centres, radius)
            if self.config.fill_gaps:
                extra = self._gap_centres(out, x, centres, windows, radius, support)
                if len(extra):
                    centres = torch.cat([centres, extra.double()])
                    scores = torch.cat([scores, torch.zeros(len(extra))])
                    windows = torch.cat(
                        [windows, self._tile_windows(out, extra.to(x.device), radius)]
                    )
        return TileProposals(centres.numpy(), scores.numpy(), windows.numpy(), support)

    def _gap_centres(
        self,
        out: PPNOutput,
        x: torch.Tensor,
        centres: torch.Tensor,
        windows: torch.Tensor,
        radius: float,
        foreground: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Extra centres ``(N, 2)`` in confident foreground that no proposal's mask covers.

        Two touching nuclei often give one score peak; the mask of that one
        proposal, held to one cell by the size prior, leaves the other
        nucleus uncovered. Every uncovered piece of foreground (where both
        the dense head and the aux net exceed ``FOREGROUND_LEVEL``) whose
        inscribed radius is at least half a cell radius gets a proposal at
        each of its distance-transform peaks (at least a radius apart).
        ``foreground``: :meth:`_foreground` of the tile ``(Y, X)`` when already computed.
        """
        from scipy import ndimage as ndi
        from skimage.feature import peak_local_max

        h, w = x.shape[-2:]
        if foreground is None:
            foreground = self._foreground(x, out)[0]
        gap = foreground > FOREGROUND_LEVEL
        if len(centres):
            r_window = self._window(radius)[1]
            _, ys, xs = window_coordinates(centres.float(), r_window)
            index = torch.zeros(len(centres), dtype=torch.long)
            best = paste_windows(windows, index, ys, xs, (1, h, w), "amax", _FLOOR)[0]
            gap &= (best <= 0).numpy()
        distance = ndi.distance_transform_edt(gap)
        peaks = peak_local_max(
            distance, min_distance=max(1, round(radius)), threshold_abs=0.5 * radius,
            exclude_border=False,
        )  # fmt: skip
        return torch.from_numpy(peaks.astype(np.float64)).reshape(-1, 2)

    def segment_instances(self, image, median_area, tiling=None, postprocess=None):
        """Instance masks of a whole image, tile by tile (generator of ``TileDone``).

        Parameters
        ----------
        image : numpy.ndarray
            ``(C, Y, X)`` float32 normalised image.
        median_area : float
            Median annotated cell area (size filter; radius if none was learnt).
        tiling : TilingConfig, optional
            Tile size and halo (the halo grows to hold a whole mask window). Flip
            averaging (``flip_tta``) is refused: proposals are not averaged.
        postprocess : PostprocessConfig, optional
            ``foreground_threshold``, ``min_size_fraction`` and ``fill_holes``.

        Returns
        -------
        Segmentation
            ``instances`` ``(Y, X)`` int32 and the ``foreground`` map.
        """
        from ..inference.postprocess import PostprocessConfig
        from ..inference.predict import Segmentation, check_channels

        if tiling is not None and tiling.flip_tta:
            raise SemisegInputError(
                f"flip averaging applies to methods that predict probability maps; "
                f"{self.name} decodes its instances from proposals",
                "predict without flip averaging (untick 'average over flips', or drop --tta)",
            )
        check_channels(self, image)
        postprocess = postprocess or PostprocessConfig()
        radius = self.cell_radius(median_area)
        threshold = float(
            np.log(postprocess.foreground_threshold / (1 - postprocess.foreground_threshold))
        )
        was_training = any(net.training for net in self.networks().values())
        self.eval()
        try:
            factor = 1.0
            if self.config.rescale:
                factor = yield from self.image_scale(image, tiling)
            work = image
            if factor != 1.0:
                work = resize_image(image, scaled_shape(image.shape[1:], factor))
            instances, foreground = yield from segment_from_proposals(
                self._propose_tile, work, self._window(radius)[1], self.main.multiple, tiling,
                self.config.merge_distance * radius, threshold,
                postprocess.min_size_fraction * median_area, postprocess.fill_holes,
                self.config.border_reach * radius, self.config.join_contact,
                self.config.join_convex_contact,
            )  # fmt: skip
        finally:
            self.train(was_training)
        # the contrast filter of the other methods (PostprocessConfig.min_contrast)
        instances = drop_faint_objects(
            instances, work, postprocess.reference_contrast, postprocess.min_contrast, median_area,
            foreground, postprocess.confident_foreground, postprocess.confident_min_contrast,
        )  # fmt: skip
        if factor != 1.0:
            shape = image.shape[1:]
            instances = resize_labels(instances, shape)
            foreground = resize_image(foreground[None], shape)[0]
        instances = relabel_sequential(instances)[0].astype(np.int32)
        return Segmentation(instances, {"foreground": foreground})

    def image_scale(self, image: np.ndarray, tiling=None) -> Generator[TileDone, None, float]:
        """How many times larger the cells of ``image`` are than the annotated ones.

        The foreground maps of the main model's dense head (deep supervision
        of the backbone) and of the auxiliary net (both semantic, so blind to
        the size prior) are thresholded at ``FOREGROUND_LEVEL``; pixels only
        one of them calls foreground go to whichever agreed class they look
        like (:func:`..inference.scale.agreed_foreground`: after a short run
        one map may miss the rims of large cells, or the other flood a dim
        background). The inscribed radius of that foreground is compared
        with the same measure on the annotated images
        (:meth:`on_training_end`; the annotations' own radius until then).
        Ratios within ``rescale_dead_zone`` of 1 give 1: on CTC, whose
        nuclei are one size in every image, the measure varied by up to 1.46x
        between images, and resizing by such a factor merged touching nuclei
        under one mask (docs/ppn_auxnet.md, change 23).
        Images of more than :data:`..inference.scale.SAMPLE_PIXELS` are
        measured on a few windows spread over them
        (:func:`..inference.scale.sample_windows`; a 4096² image: four of
        1024², a quarter of the dense pass). When the two agree nowhere,
        nothing is resized; nor for model files
        saved before the reference radius existed, images with too little
        foreground, or images where one object holds at least
        ``ONE_PIECE_SHARE`` of it (a connected piece of less than two disks
        of its inscribed radius; the area-weighted median would measure that
        one object: an out-of-focus glow on a DSB image shrank it 8 times and
        lost its 30 nuclei). A clump of touching cells holding most of the
        foreground (dense tissue) still gives its cells' radius and counts.

        Parameters
        ----------
        image : numpy.ndarray
            ``(C, Y, X)`` float32 normalised image.
        tiling : TilingConfig, optional
            Tile size for the dense pass.

        Yields
        ------
        TileDone
            Progress of the dense pass.

        Returns
        -------
        float
            Factor by which to shrink the image (1 = keep; below 1 = enlarge).
        """
        reference = float(self.main.cell_inradius)
        if reference <= 0:
            return 1.0
        device = self.device

        def forward(batch: np.ndarray) -> np.ndarray:
            return self._foreground_maps(torch.from_numpy(batch).to(device))

        pieces = []
        for rows, cols in sample_windows(image.shape[1:]):
            window = np.ascontiguousarray(image[:, rows, cols])
            maps = yield from predict_tiled(
                forward, window, 2, tiling, multiple=self.main.multiple
            )
            pieces.append(agreed_foreground(window, maps[0], maps[1]))
        radius = inscribed_radius(
            pieces[0] if len(pieces) == 1 else mosaic(pieces),
            min_area=2.0 * math.pi * reference**2,
            max_object_share=ONE_PIECE_SHARE,  # docs/ppn_auxnet.md, change 26
        )
        return scale_factor(radius, reference, dead_zone=self.config.rescale_dead_zone)


def _rampup(progress: float, warmup: float, length: float) -> float:
    """0 during the warm-up, then the sigmoid ramp-up (S8) to 1 over ``length``."""
    # imported here: the engine package imports the method registry
    from ..engine.schedules import sigmoid_rampup

    if progress < warmup:
        return 0.0
    return sigmoid_rampup(progress - warmup, length)


def auto_stride(radius: float, minimum: int = 4) -> int:
    """PPN grid stride for a cell radius: the power of 2 nearest to ``r / 2``, 4 to 16.

    A stride near half the radius keeps a few anchors per cell: enough
    positives, and 3x3 score peaks of one cell that merge instead of splitting
    a large cell (METHODS.md's fixed 4 px grid split CTC nuclei of 60 px).

    Parameters
    ----------
    radius : float
        Typical cell radius in pixels.
    minimum : int
        Smallest stride allowed (the model's feature stride).

    Returns
    -------
    int

    Examples
    --------
    >>> auto_stride(6.2), auto_stride(15.0), auto_stride(30.0)
    (4, 8, 16)
    """
    stride = 2 ** round(math.log2(max(radius / 2.0, 1.0)))
    return int(min(max(stride, 4, minimum), 16))


def _values_at(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Values of ``image`` ``(Y, X)`` at the pixels nearest to ``points`` ``(N, 2)``."""
    h, w = image.shape
    ys = np.clip(np.rint(points[:, 0]), 0, h - 1).astype(int)
    xs = np.clip(np.rint(points[:, 1]), 0, w - 1).astype(int)
    return image[ys, xs]


def _label_borders(labels: torch.Tensor) -> torch.Tensor:
    """Pixels ``(B, Y, X)`` of a cell whose 3x3 neighbourhood holds another id (float 0/1)."""
    x = labels.float()[:, None]
    high = F.max_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    low = -F.max_pool2d(F.pad(-x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return ((high != low) & (x > 0)).float()[:, 0]


def _relabel(labels: np.ndarray) -> np.ndarray:
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels.astype(np.int32))[0].astype(np.int32)


__all__ = ["PPNAuxConfig", "PPNAuxNet"]
