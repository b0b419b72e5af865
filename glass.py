"""GLASS training and testing logic (GAS + LAS), resumable, with honest model selection."""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import tqdm
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import evaluation
import utils
from errors import first_line
from evaluation import EvalResult
from inference import calibration
from loss import FocalLoss
from model import (
    CHECKPOINT_FORMAT,
    LATEST_NAME,
    CheckpointError,
    GlassModel,
    final_checkpoint_path,
    load_checkpoint,
)

LOGGER = logging.getLogger(__name__)

SELECTION_RULES = ("last", "test-best")
COMPILE_MODES = ("auto", "on", "off")
# GAS batches at least this large (rows x hidden width) use the compiled gradient under --compile auto:
# below it, compiling (seconds, once per shape) costs more than it saves (tests, tiny models).
COMPILE_MIN_ELEMENTS = 1 << 20
ASCENT_STEP_SIZE = 0.001
PROJECTION_EVERY = 5


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters of the `net` command (reference defaults)."""

    meta_epochs: int = 640
    eval_epochs: int = 1
    dsc_margin: float = 0.5
    train_backbone: bool = False
    mining: int = 1
    noise: float = 0.015
    radius: float = 0.75
    p: float = 0.5
    lr: float = 1e-4
    svd: int = 0
    step: int = 20
    limit: int = 392
    select: str = "last"


def truncate_offsets(points: torch.Tensor, anchors: torch.Tensor, low: Any, high: Any) -> torch.Tensor:
    """Rescales each point's offset from its anchor so that its norm lies in [low, high]."""
    offset = points - anchors
    norm = offset.norm(dim=1, keepdim=True)
    clamped = torch.clamp(norm, low, high)
    return anchors + offset * (clamped / (norm + 1e-10))


def truncation_vjp(offset: torch.Tensor, grad: torch.Tensor, low: Any, high: Any) -> torch.Tensor:
    """Vector-Jacobian product of the truncation h -> clamp(|h|, low, high) h / (|h| + 1e-10) at `offset`.

    The Jacobian is symmetric: s I + c h h^T with s = a / (|h| + eps), a = clamp(|h|, low, high) and
    c = (a' / (|h| + eps) - a / (|h| + eps)^2) / |h|, where a' is 1 inside [low, high] and 0 outside
    (as torch.clamp differentiates). A truncated row keeps only the tangential part of the gradient,
    scaled by a / |h|; a row inside the band passes it unchanged (up to eps).
    """
    norm = offset.norm(dim=1, keepdim=True)
    clamped = torch.clamp(norm, low, high)
    inside = ((norm >= low) & (norm <= high)).to(offset.dtype)
    denom = norm + 1e-10
    coef = (inside / denom - clamped / denom**2) / norm.clamp_min(1e-30)
    return grad * (clamped / denom) + offset * (coef * (offset * grad).sum(dim=1, keepdim=True))


class _ThroughTruncations(torch.autograd.Function):
    """Identity on the ascended features whose gradient w.r.t. the clean features goes through the
    recorded truncations, as autograd does in the reference's loop: its iterates are updated in place
    under no_grad, so its graph sees gaus = T_k(...T_1(true + noise)) with every truncation T_i
    evaluated at the actual iterate (hypersphere: offsets from the constant centre)."""

    @staticmethod
    def forward(ctx: Any, true: torch.Tensor, ascended: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                *offsets: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(low, high, *offsets)
        return ascended.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        low, high, *offsets = ctx.saved_tensors
        for offset in reversed(offsets):
            grad = truncation_vjp(offset, grad, low, high)
        return (grad, None, None, None, *([None] * len(offsets)))


def ascend_features(
    disc: nn.Module, true: torch.Tensor, gaus: torch.Tensor, anchor: torch.Tensor, low: Any, high: Any, steps: int,
    record: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """GAS gradient ascent, literally: move gaus up the anomaly BCE by normalised-gradient steps;
    every PROJECTION_EVERY steps rescale each offset from its anchor to a norm in [low, high].
    `record` receives each offset just before it is truncated."""
    n_true = len(true)
    for step in range(steps):
        gaus = gaus.detach().requires_grad_(True)
        scores = disc(torch.cat([true, gaus]))[n_true:]
        loss = F.binary_cross_entropy(scores, torch.ones_like(scores))
        (grad,) = torch.autograd.grad(loss, [gaus])
        with torch.no_grad():
            gaus = gaus + ASCENT_STEP_SIZE * grad / (grad.norm(dim=1, keepdim=True) + 1e-10)
            if (step + 1) % PROJECTION_EVERY == 0:
                if record is not None:
                    record.append(gaus - anchor)
                gaus = truncate_offsets(gaus, anchor, low, high)
    return gaus.detach()


def ascend_in_hidden_space(
    disc: nn.Module, true: torch.Tensor, gaus: torch.Tensor, anchor: torch.Tensor, low: Any, high: Any, steps: int,
    record: list[torch.Tensor] | None = None, gradient: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """ascend_features, computed in the discriminator's hidden space (same result, far fewer FLOPs).

    With W the first layer's weight and delta = dLoss/dh at its output h = g W^T + b, the step on g
    is delta W / |delta W|, so h moves by delta (W W^T) / |delta W|, and |delta W|^2 is a row dot of
    delta (W W^T) and delta. Tracking h, the squared offset norm q = |g - anchor|^2 and the
    accumulated move A (g = anchor + sigma (g0 - anchor) + A W) replaces the two N x D x H products
    of every step by one N x H x H product; g itself is formed once at the end. The true rows'
    hidden outputs never change, so the discriminator sees them through their batch-norm
    statistics only (same statistics, same running-statistics update as scoring [true; gaus]).
    `record` receives each offset g - anchor just before it is truncated (one N x H x D product each).
    `gradient(disc, hidden, companion)` computes delta (default: Discriminator.anomaly_gradient_beside;
    GasGradient may pass a compiled one).
    """
    gradient = gradient or type(disc).anomaly_gradient_beside
    first = disc.first_linear
    single_block = len(disc.body) == 1
    with torch.no_grad():
        weight = first.weight.detach()
        gram = weight @ weight.T
        true_hidden = first(true)
        companion = (*torch.var_mean(true_hidden, dim=0, unbiased=False), len(true_hidden))
        hidden = first(gaus)
        anchor_hidden = true_hidden if anchor is true else first(anchor)
        offset = gaus - anchor
        sq_dist = offset.pow(2).sum(dim=1)
        scale = torch.ones_like(sq_dist)
        moved = torch.zeros_like(hidden)
        delta_gram = torch.empty_like(hidden)
    for step in range(steps):
        if single_block:
            with torch.no_grad():
                delta = gradient(disc, hidden, companion)
        else:
            leaf = hidden.detach().requires_grad_(True)
            scores = disc.forward_from_first(torch.cat([true_hidden, leaf]))[len(true):]
            loss = F.binary_cross_entropy(scores, torch.ones_like(scores))
            (delta,) = torch.autograd.grad(loss, [leaf])
        with torch.no_grad():
            torch.mm(delta, gram, out=delta_gram)
            grad_norm = _row_dot(delta_gram, delta).clamp_min(0).sqrt()
            coef = ASCENT_STEP_SIZE / (grad_norm + 1e-10)
            towards = _row_dot(hidden, delta) - _row_dot(anchor_hidden, delta)
            sq_dist = sq_dist + 2 * coef * towards + (coef * grad_norm) ** 2
            hidden.addcmul_(coef[:, None], delta_gram)
            moved.addcmul_(coef[:, None], delta)
            if (step + 1) % PROJECTION_EVERY == 0:
                if record is not None:  # the offset g - anchor, formed in input space only when asked
                    record.append(torch.addmm(scale[:, None] * offset, moved, weight))
                dist = sq_dist.clamp_min(0).sqrt()
                factor = (torch.clamp(dist, low, high) / (dist + 1e-10))[:, None]
                hidden.sub_(anchor_hidden).mul_(factor).add_(anchor_hidden)
                moved.mul_(factor)
                scale, sq_dist = factor[:, 0] * scale, (factor[:, 0] * dist) ** 2
    with torch.no_grad():
        return torch.addmm(anchor + scale[:, None] * offset, moved, weight)


class GasGradient:
    """The GAS inner-loop gradient (Discriminator.anomaly_gradient_beside), compiled with torch.compile
    for large batches when asked: Inductor fuses its dozen element-wise passes over the (N, H)
    activations into a few loops (benchmarks/bench_gas.py: about 1.5x per ascent step at the paper's
    dims on a 2-core CPU; the same values to round-off, tested).
    mode "auto" compiles CPU batches of at least COMPILE_MIN_ELEMENTS, "on" every batch, "off" none: on a GPU
    (an H200, README "Speed of ours alone") compiling saved nothing per epoch and cost about 6 s once per class.
    Without a working compiler it says so once and stays eager."""

    def __init__(self, mode: str = "auto") -> None:
        if mode not in COMPILE_MODES:
            raise ValueError(f"--compile {mode!r}: use one of {', '.join(COMPILE_MODES)}")
        self.mode = mode
        self._compiled: Callable[..., torch.Tensor] | None = None

    def compiles(self, hidden: torch.Tensor) -> bool:
        """Whether a step on these hidden activations runs compiled."""
        return self.mode == "on" or (self.mode == "auto" and hidden.device.type == "cpu"
                                     and hidden.numel() >= COMPILE_MIN_ELEMENTS)

    def __call__(self, disc: nn.Module, hidden: torch.Tensor, companion: Any) -> torch.Tensor:
        """delta for one ascent step; see Discriminator.anomaly_gradient_beside."""
        eager = type(disc).anomaly_gradient_beside
        if not self.compiles(hidden):
            return eager(disc, hidden, companion)
        if self._compiled is None:
            self._compiled = torch.compile(eager)
        try:
            return self._compiled(disc, hidden, companion)
        except (RuntimeError, OSError, torch._dynamo.exc.TorchDynamoException) as err:
            LOGGER.warning("torch.compile unavailable (%s); the GAS gradient runs uncompiled",
                           first_line(err))
            self.mode = "off"
            return eager(disc, hidden, companion)


def changed_settings(then: Any, now: Any) -> str:
    """`name then -> now` for each setting that differs between two config dicts (or the two values)."""
    if not (isinstance(then, dict) and isinstance(now, dict)):
        return f"{then} -> {now}"
    return ", ".join(f"{name} {then.get(name)} -> {now.get(name)}" for name in sorted(set(then) | set(now))
                     if then.get(name) != now.get(name))


def dataset_options(meta: dict[str, Any]) -> dict[str, Any]:
    """The training dataset options a checkpoint's meta records (older checkpoints: --train_crop, or none)."""
    if "dataset_options" in meta:
        return dict(meta["dataset_options"])
    return {"train_crop": meta.get("train_crop", "centre")}  # before --train_crop: the centre crop


def changed_dataset_options(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`--flag then -> now` for each dataset option that both metas record and this run changes."""
    then, asked = dataset_options(before), dataset_options(now)
    return [f"--{name} {then[name]} -> {asked[name]}" for name in then if name in asked and then[name] != asked[name]]


def unrecorded_dataset_options(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`--flag` for each dataset option this run records that a checkpoint's meta does not (older checkpoints)."""
    then = dataset_options(before)
    return [f"--{name}" for name in dataset_options(now) if name not in then]


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of two (N, K) matrices, without an (N, K) temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).reshape(-1)


class GLASS:
    """Trains one class's projection and discriminator, and tests the selected model."""

    def __init__(
        self,
        model: GlassModel,
        cfg: TrainConfig,
        device: torch.device,
        class_dir: Path,
        svd: int,
        meta: dict[str, Any] | None = None,
        hidden_space_ascent: bool = True,
        compile_mode: str = "auto",
        heldout: Sequence[str | Path] = (),
    ) -> None:
        self.model = model.to(device)
        self.cfg = cfg
        self.device = device
        self.class_dir = Path(class_dir)
        self.svd = int(svd)
        # Defect-free images kept out of training; the thresholds are calibrated on them (calibration.py).
        self.heldout = [Path(p) for p in heldout]
        self.meta = {**(meta or {}), "heldout": [p.name for p in self.heldout]}
        self.hidden_space_ascent = hidden_space_ascent  # False: the literal ascent (benchmarks compare both)
        self.gas_gradient = GasGradient(compile_mode)
        self.focal_loss = FocalLoss()
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "discriminator": torch.optim.AdamW(model.discriminator.parameters(), lr=cfg.lr * 2)
        }
        if model.pre_projection is not None:
            self.optimizers["pre_projection"] = torch.optim.Adam(
                model.pre_projection.parameters(), lr=cfg.lr, weight_decay=1e-5
            )
        if cfg.train_backbone:
            for param in model.extractor.parameters():
                param.requires_grad_(True)
            self.optimizers["backbone"] = torch.optim.AdamW(model.extractor.parameters(), lr=cfg.lr)
        self.global_step = 0
        self.stored_calibration: dict[str, Any] | None = None  # the tested checkpoint's (set by test)
        self.writer: SummaryWriter | None = None
        self.timings: dict[str, float] = {}
        self.epoch_seconds: list[float] = []

    # ------------------------------------------------------------------ features
    def _set_backbone_mode(self, training: bool) -> None:
        """Batch-norm mode of the backbone. FeatureExtractor.train() always stays in eval (it is
        frozen by default), so a trained backbone is switched by nn.Module.train itself."""
        nn.Module.train(self.model.extractor, training)

    def _embed(self, images: torch.Tensor, with_grad: bool) -> torch.Tensor:
        """Aggregated patch features of a batch at training time (centre and discriminator passes).

        With --train_backbone, as the reference's _embed(evaluation=False): the backbone in train
        mode (batch statistics, running statistics updated), with gradients when `with_grad`.
        Otherwise the frozen backbone in eval mode, without gradients. Test time (model.predict,
        training_scores) always runs the backbone in eval mode.
        """
        images = images.to(self.device, non_blocking=True)
        self._set_backbone_mode(self.cfg.train_backbone)
        with torch.set_grad_enabled(with_grad and self.cfg.train_backbone):
            return self.model.embed(images)[0]

    @torch.no_grad()
    def cache_clean_features(self, clean_loader: torch.utils.data.DataLoader) -> torch.Tensor:
        """Aggregated features of every clean training image (N, h*w, dim), computed once (frozen backbone only)."""
        if self.cfg.train_backbone:
            raise ValueError("clean features cannot be cached while the backbone trains (they change every step)")
        chunks: dict[int, torch.Tensor] = {}
        start = time.perf_counter()
        for batch in tqdm.tqdm(clean_loader, desc="clean features", unit="batch", leave=False):
            features = self._embed(batch["image"], with_grad=False)
            features = features.reshape(len(batch["idx"]), -1, features.shape[-1])
            for idx, feature in zip(batch["idx"].tolist(), features):
                chunks[idx] = feature
        self._add_time("backbone (clean, once)", time.perf_counter() - start)
        return torch.stack([chunks[i] for i in range(len(chunks))])

    @torch.no_grad()
    def compute_centre(self, clean: torch.Tensor | None, clean_loader: torch.utils.data.DataLoader,
                       epoch: int = 0) -> torch.Tensor:
        """Centre c: mean projected clean feature per grid position (h*w, dim).

        From the cached features when given; else from this epoch's clean training images (the
        images the epoch trains on). With --train_backbone, as the reference: the backbone in train
        mode (batch statistics; running statistics updated), over shuffled batches (batch statistics
        depend on which images share a batch; the order is a function of the seed and epoch).
        """
        self.model.eval()
        if clean is not None:
            # The projection is affine (linear layers, no activation), so the mean of the
            # projected features is the projection of the mean feature: one small pass.
            return self.model.project(clean.mean(dim=0))
        clean_loader.dataset.set_epoch(epoch)
        loader = self._shuffled(clean_loader, epoch) if self.cfg.train_backbone else clean_loader
        total, count = None, 0
        for batch in loader:
            feats = self.model.project(self._embed(batch["image"], with_grad=False))
            feats = feats.reshape(len(batch["idx"]), -1, feats.shape[-1])
            total = feats.sum(0) if total is None else total + feats.sum(0)
            count += feats.shape[0]
        return total / count

    @staticmethod
    def _shuffled(loader: torch.utils.data.DataLoader, epoch: int) -> torch.utils.data.DataLoader:
        """`loader` over the same dataset in an order drawn from (dataset seed, epoch): resumable, and
        the training loader's own shuffle generator is not consumed."""
        seed = np.random.SeedSequence([loader.dataset.seed, epoch, 1]).generate_state(1)[0]
        return torch.utils.data.DataLoader(
            loader.dataset, batch_size=loader.batch_size, shuffle=True, num_workers=loader.num_workers,
            collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn,
            generator=torch.Generator().manual_seed(int(seed)),
        )

    # ------------------------------------------------------------------ losses
    def _global_synthesis(
        self, true: torch.Tensor, centre: torch.Tensor, r_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """GAS: gradient ascent from Gaussian-perturbed true features; returns (bce, true s, gaus s, r_g)."""
        disc = self.model.discriminator
        gaus = (true + torch.randn_like(true) * self.cfg.noise).detach()
        truncations: list[torch.Tensor] = []
        if self.cfg.mining:
            fixed = true.detach()
            if self.svd == 1:
                anchor, low, high = centre, r_t, 2 * r_t
            else:
                anchor, low, high = fixed, 0.5, 1.0
            fast = self.hidden_space_ascent and disc.first_linear is not None
            record = truncations if self.svd == 1 else None
            if fast:
                gaus = ascend_in_hidden_space(disc, fixed, gaus, anchor, low, high, self.cfg.step, record,
                                              self.gas_gradient)
            else:
                gaus = ascend_features(disc, fixed, gaus, anchor, low, high, self.cfg.step, record)
        r_g = float(torch.quantile((gaus - centre).norm(dim=1), self.cfg.radius))
        # Gradient to the projection as in the reference, whose loop updates its iterates in place
        # under no_grad: its graph holds gaus = true + noise followed by the truncations. Manifold:
        # each offset is taken from `true` itself, so gaus = true + (a constant offset). Hypersphere:
        # offsets from the constant centre, so the gradient passes through every truncation.
        if truncations:
            r_t = torch.as_tensor(r_t, dtype=true.dtype, device=true.device)
            gaus = _ThroughTruncations.apply(true, gaus, r_t, 2 * r_t, *truncations)
        else:
            gaus = true + (gaus - true).detach()
        scores = disc(torch.cat([true, gaus]))
        true_scores, gaus_scores = scores[: len(true)], scores[len(true):]
        bce = F.binary_cross_entropy(true_scores, torch.zeros_like(true_scores)) + F.binary_cross_entropy(
            gaus_scores, torch.ones_like(gaus_scores)
        )
        return bce, true_scores.detach(), gaus_scores.detach(), r_g

    def _local_synthesis(
        self, fake: torch.Tensor, mask: torch.Tensor, centre: torch.Tensor, r_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """LAS: focal loss on the LAS features (hard half when p > 0); returns (loss, scores, r_f)."""
        anomalous = mask[:, 0] == 1
        r_f = 0.0
        if anomalous.any():
            r_f = float(torch.quantile((fake[anomalous] - centre[anomalous]).detach().norm(dim=1), self.cfg.radius))
        if self.svd == 1 and anomalous.any():
            pushed = truncate_offsets(fake, centre, 2 * r_t, 4 * r_t)
            fake = torch.where(anomalous[:, None], pushed, fake)
        scores = self.model.discriminator(fake)
        chosen_scores, chosen_mask = scores, mask
        if self.cfg.p > 0:
            hardness = (scores - mask) ** 2
            keep = (hardness >= torch.quantile(hardness.detach(), self.cfg.p))[:, 0]
            chosen_scores, chosen_mask = scores[keep], mask[keep]
        loss = self.focal_loss(torch.cat([1 - chosen_scores, chosen_scores], dim=1), chosen_mask)
        return loss, scores.detach(), r_f

    def _train_step(self, batch: dict[str, Any], clean: torch.Tensor | None, centre: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch (GAS + LAS)."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        start = time.perf_counter()
        if clean is not None:
            true_raw = clean[batch["idx"].to(clean.device)].reshape(-1, clean.shape[-1])
        else:
            true_raw = self._embed(batch["image"], with_grad=True)
        fake_raw = self._embed(batch["aug"], with_grad=True)
        self._add_time("backbone (LAS images)", time.perf_counter() - start)

        true = self.model.project(true_raw)
        fake = self.model.project(fake_raw)
        mask = batch["mask_s"].to(self.device).reshape(-1, 1).float()
        centre_rows = centre.repeat(len(batch["idx"]), 1)

        with torch.no_grad():
            normal = torch.cat([fake[mask[:, 0] == 0], true])
            normal_centre = torch.cat([centre_rows[mask[:, 0] == 0], centre_rows])
            r_t = torch.quantile((normal - normal_centre).norm(dim=1), self.cfg.radius)

        start = time.perf_counter()
        bce, true_scores, gaus_scores, r_g = self._global_synthesis(true, centre_rows, r_t)
        self._add_time("GAS (gradient ascent)", time.perf_counter() - start)
        start = time.perf_counter()
        focal, fake_scores, r_f = self._local_synthesis(fake, mask, centre_rows, r_t)
        loss = bce + focal
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
        self._add_time("LAS + backward + step", time.perf_counter() - start)

        margin = self.cfg.dsc_margin
        normal_scores = torch.cat([fake_scores[mask == 0], true_scores.flatten()])
        anomalous_scores = torch.cat([fake_scores[mask == 1], gaus_scores.flatten()])
        return {
            "loss": float(loss.detach()),
            "p_true": float((normal_scores < margin).float().mean()),
            "p_fake": float((anomalous_scores >= margin).float().mean()),
            "r_t": float(r_t),
            "r_g": r_g,
            "r_f": r_f,
        }

    # ------------------------------------------------------------------ training loop
    def train(
        self,
        train_loader: torch.utils.data.DataLoader,
        clean_loader: torch.utils.data.DataLoader,
        test_loader: torch.utils.data.DataLoader,
        cache_features: bool,
        after_epoch: Callable[[int], None] | None = None,
    ) -> None:
        """Trains (or resumes) until meta_epochs, writing ckpt.pth every epoch and the selected model.

        `cache_features` (clean features computed once) is ignored when the backbone trains.
        """
        cache_features = cache_features and not self.cfg.train_backbone
        latest = self.class_dir / LATEST_NAME
        loader_generator = train_loader.generator
        state = self._resume(latest, loader_generator)
        if state.get("finished") and final_checkpoint_path(self.class_dir) is not None:
            LOGGER.info("%s: training finished earlier, skipping to test", self.class_dir.name)
            return
        start_epoch = int(state.get("epoch", 0))
        best = state.get("best")
        self.writer = SummaryWriter(log_dir=str(self.class_dir / "tb"), purge_step=self.global_step or None)
        clean = self.cache_clean_features(clean_loader) if cache_features else None
        bar = tqdm.trange(start_epoch, self.cfg.meta_epochs, unit="epoch", desc=self.class_dir.name,
                          initial=start_epoch, total=self.cfg.meta_epochs)
        for epoch in bar:
            start = time.perf_counter()
            centre = self.compute_centre(clean, clean_loader, epoch)
            self._add_time("centre", time.perf_counter() - start)
            stats = self._train_epoch(train_loader, clean, centre, epoch)
            self.epoch_seconds.append(time.perf_counter() - start)
            bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items()} | {"svd": self.svd})
            if (epoch + 1) % self.cfg.eval_epochs == 0 or epoch + 1 == self.cfg.meta_epochs:
                best = self._evaluate_epoch(test_loader, epoch, best, clean_loader, clean)
            self._save_latest(latest, epoch + 1, best, loader_generator, finished=False)
            if after_epoch is not None:
                after_epoch(epoch)
        if self.cfg.select == "last":
            self._save_final(self.cfg.meta_epochs - 1, clean_loader, clean, None)
        self._save_latest(latest, self.cfg.meta_epochs, best, loader_generator, finished=True)
        self.writer.close()

    def _train_epoch(
        self, loader: torch.utils.data.DataLoader, clean: torch.Tensor | None, centre: torch.Tensor, epoch: int
    ) -> dict[str, float]:
        """Iterates batches until more than `limit` images were seen; returns mean statistics."""
        loader.dataset.set_epoch(epoch)
        self.model.train()
        self._set_backbone_mode(self.cfg.train_backbone)
        history: list[dict[str, float]] = []
        seen = 0
        fetch_start = time.perf_counter()
        for batch in loader:
            self._add_time("data loading", time.perf_counter() - fetch_start)
            stats = self._train_step(batch, clean, centre)
            for key, value in stats.items():
                self.writer.add_scalar(key, value, self.global_step)
            self.global_step += 1
            history.append(stats)
            seen += len(batch["idx"])
            fetch_start = time.perf_counter()
            if seen > self.cfg.limit:
                break
        return {k: float(np.mean([h[k] for h in history])) for k in history[0]}

    def _evaluate_epoch(
        self, test_loader: torch.utils.data.DataLoader, epoch: int, best: dict[str, Any] | None,
        clean_loader: torch.utils.data.DataLoader, clean: torch.Tensor | None,
    ) -> dict[str, Any] | None:
        """Test-set metrics for TensorBoard; with select=test-best also keeps the best epoch's model."""
        start = time.perf_counter()
        result = self.evaluate(test_loader, keep_images=False)
        self._add_time("evaluation", time.perf_counter() - start)
        for name, value in result.metrics.items():
            self.writer.add_scalar(name, value, epoch)
        if self.cfg.select != "test-best":
            return best
        score = result.metrics["image_auroc"] + result.metrics["pixel_auroc"]
        if best is None or score > best["score"]:
            previous = final_checkpoint_path(self.class_dir)
            self._save_final(epoch, clean_loader, clean, result.metrics)
            if previous is not None and previous != final_checkpoint_path(self.class_dir):
                previous.unlink()
            best = {"epoch": epoch, "score": score}
        return best

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_header(self) -> dict[str, Any]:
        """Fields shared by ckpt.pth and ckpt_best_<epoch>.pth."""
        return {
            "format": CHECKPOINT_FORMAT,
            "method": self.model.method,
            "net": self.model.cfg.to_dict(),
            "train": dataclasses.asdict(self.cfg),
            "svd": self.svd,
            "meta": self.meta,
        }

    def _weights(self) -> dict[str, Any]:
        """Trained weights (plus the backbone when it is trained)."""
        weights = self.model.head_state()
        if self.cfg.train_backbone:
            weights["backbone"] = {k: v.detach().cpu() for k, v in self.model.extractor.state_dict().items()}
        return weights

    def _save_latest(
        self, path: Path, epoch: int, best: dict[str, Any] | None, generator: torch.Generator, finished: bool
    ) -> None:
        """ckpt.pth: everything needed to resume after `epoch` completed epochs."""
        state = {
            **self._checkpoint_header(),
            "epoch": epoch,
            "finished": finished,
            "weights": self._weights(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "rng": utils.capture_rng_state(generator),
            "global_step": self.global_step,
            "best": best,
        }
        utils.atomic_torch_save(state, path)

    def _save_final(
        self, epoch: int, clean_loader: torch.utils.data.DataLoader, clean: torch.Tensor | None,
        test_metrics: dict[str, float] | None,
    ) -> None:
        """ckpt_best_<epoch>.pth: the selected model, its config, its training-image scores and its
        calibrated thresholds."""
        state = {
            **self._checkpoint_header(),
            "epoch": epoch,
            "selection": self.cfg.select,
            "weights": self._weights(),
            "train_scores": torch.from_numpy(self.training_scores(clean_loader, clean)),
            "calibration": self.calibrate(clean_loader),
            "test_metrics_at_selection": test_metrics,
            "timing": self.training_timing(),
        }
        utils.atomic_torch_save(state, self.class_dir / f"ckpt_best_{epoch}.pth")

    def calibrate(self, clean_loader: torch.utils.data.DataLoader) -> dict[str, Any] | None:
        """Thresholds and leave-one-out false-alarm rates from the held-out images (the training
        images' spread and 99.5th percentile as floors), all scored whole as the inference engine
        scores frames; from the training images alone (optimistic) when none are held out. None when
        the loader's dataset names no image files."""
        training = getattr(clean_loader.dataset, "image_paths", None)
        if not training:
            return None
        result = calibration.calibrate_model(self.model, self.device, self.heldout, training,
                                             batch_size=clean_loader.batch_size or 1)
        LOGGER.info("%s: %s", self.class_dir.name, calibration.describe(result))
        return result

    def training_timing(self) -> dict[str, Any]:
        """Wall time of the epochs trained in this process (test-set evaluation excluded), by stage."""
        stages = {k: v for k, v in self.timings.items() if k != "evaluation"}
        once = stages.get("backbone (clean, once)", 0.0)
        return {"epochs": len(self.epoch_seconds), "train_seconds": sum(self.epoch_seconds) + once,
                "epoch_seconds": list(self.epoch_seconds), "stages": stages}

    def _resume(self, latest: Path, generator: torch.Generator) -> dict[str, Any]:
        """Restores ckpt.pth when it matches this run's settings; returns its state ({} when fresh)."""
        if not latest.exists():
            return {}
        state = load_checkpoint(latest)
        header = self._checkpoint_header()
        for key in ("net", "train", "svd"):
            if state.get(key) != header[key]:
                changed = changed_settings(state.get(key), header[key])
                raise CheckpointError(f"{latest}: was trained with different '{key}' settings ({changed}); "
                                      f"use the same flags, or delete {self.class_dir} to start over")
        if state.get("finished"):
            return state
        before = (state.get("meta") or {}).get("heldout", [])
        if before != header["meta"]["heldout"]:  # an unfinished run must go on with the same training images
            raise CheckpointError(
                f"{latest}: was trained with {len(before)} held-out images, this run holds out "
                f"{len(header['meta']['heldout'])} others (--holdout or train/good changed); use the same --holdout "
                f"(0 for runs started before --holdout existed) and images, or delete {self.class_dir} to start over"
            )
        changed = changed_dataset_options(state.get("meta") or {}, header["meta"])
        if changed:
            raise CheckpointError(f"{latest}: was trained with other dataset options ({', '.join(changed)}); use "
                                  f"the same ones, or delete {self.class_dir} to start over")
        unchecked = unrecorded_dataset_options(state.get("meta") or {}, header["meta"])
        if unchecked:
            LOGGER.warning("%s: made before %s were recorded in checkpoints, so they cannot be compared; resuming "
                           "assumes this run uses the values it was trained with", latest, ", ".join(unchecked))
        self.model.load_head_state(state["weights"], str(latest))
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        utils.restore_rng_state(state["rng"], generator)
        self.global_step = int(state["global_step"])
        LOGGER.info("%s: resuming after epoch %d", self.class_dir.name, state["epoch"])
        return state

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def training_scores(self, clean_loader: torch.utils.data.DataLoader, clean: torch.Tensor | None) -> np.ndarray:
        """Image scores of the clean training images (stored for thresholds)."""
        self.model.eval()
        scores = []
        if clean is not None:
            for chunk in clean.split(8):
                patch = self.model.score_features(chunk.reshape(-1, chunk.shape[-1]))
                scores.append(patch.reshape(len(chunk), -1).max(dim=1).values.cpu())
        else:  # no anomaly maps needed: the image score is the largest patch score
            for batch in clean_loader:
                scores.append(self.model(batch["image"].to(self.device)).flatten(1).max(dim=1).values.cpu())
        return torch.cat(scores).numpy().astype(np.float32)

    def evaluate(self, test_loader: torch.utils.data.DataLoader, keep_images: bool = True) -> EvalResult:
        """Scores the test set and computes image/pixel AUROC, AP and PRO (evaluation.evaluate)."""
        return evaluation.evaluate(self.model, test_loader, self.device, keep_images)

    def test(self, test_loader: torch.utils.data.DataLoader, vis_dir: Path | None) -> evaluation.ClassOutcome:
        """Loads the selected model, evaluates it and writes visualisations (evaluation.evaluate_class)."""
        outcome = evaluation.evaluate_class(self.model, self.class_dir, test_loader, self.device, vis_dir)
        self.stored_calibration = outcome.calibration
        return outcome

    def _add_time(self, stage: str, seconds: float) -> None:
        """Accumulates wall time per stage (printed by benchmarks/bench_train.py)."""
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds
