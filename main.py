"""GLASS command line, as the official repository's: main [global opts] METHOD [...] dataset [...].

METHOD is `net` (GLASS), `patchcore`, `padim`, `draem` or `ae` (the convolutional autoencoder); one per run:

    python main.py --gpu 0 --seed 0 --test ckpt net -b wideresnet50 -le layer2 -le layer3 \
        dataset -d bottle mvtec /path/to/mvtec /path/to/dtd/images
    python main.py --test ckpt patchcore -b efficientnet_lite0 -le blocks.2 -le blocks.4 --coreset 0.1 \
        dataset -d brick mvtec /path/to/mvtec /path/to/dtd/images
    python main.py --test test dataset -d bottle mvtec /path/to/mvtec /path/to/dtd/images

Several classes fan out with `--gpu 0 1 2 3` (one process per GPU) or `--ray auto` (every (backbone, class) job a
Ray task, `scale_out`); results.csv is the same as a sequential run's (README, "Scale out").
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import click
import PIL.Image
import torch

import backbones
import common
import scale_out
import utils
from datasets import base as data
from datasets import distribution
from datasets.base import forced_resize
from datasets.registry import build_dataset
from errors import UserError, first_line
from evaluation import ClassOutcome, evaluate_class
from fitting import fit_class
from glass import COMPILE_MODES, GLASS, SELECTION_RULES, TrainConfig
from inference import calibration
from methods.autoencoder import ERRORS
from methods.padim import COVARIANCES, default_layers
from methods.pixel import PIXEL_BACKBONE, PixelModel
from methods.registry import DEFAULT_METHOD, METHODS, build_model, config_from_checkpoint
from model import LATEST_NAME, CheckpointError, GlassModel, NetConfig, final_checkpoint_path, load_checkpoint

LOGGER = logging.getLogger("glass")


@dataclass(frozen=True)
class NetOptions:
    """The `net` command: one architecture per backbone plus the training settings."""

    backbones: tuple[str, ...]
    layers: tuple[str, ...]
    pretrain_embed_dimension: int
    target_embed_dimension: int
    patchsize: int
    dsc_layers: int
    dsc_hidden: int
    pre_proj: int
    train: TrainConfig
    normalization: str = backbones.DEFAULT_NORMALIZATION
    compile: str = "auto"
    method: str = "glass"

    def config(self, backbone: str, dataset: data.DatasetConfig, resize: int) -> NetConfig:
        """The model configuration of one backbone for a dataset's image size and a class's resize."""
        info = backbones.backbone_info(backbone)
        mean, std = backbones.normalization_stats(info, self.normalization)
        return NetConfig(
            backbone=backbone,
            layers=tuple(self.layers) or info.default_layers,
            pretrain_embed_dimension=self.pretrain_embed_dimension,
            target_embed_dimension=self.target_embed_dimension,
            patchsize=self.patchsize,
            dsc_layers=self.dsc_layers,
            dsc_hidden=self.dsc_hidden,
            pre_proj=self.pre_proj,
            imagesize=dataset.imagesize,
            resize=resize,
            mean=tuple(mean),
            std=tuple(std),
        )


@dataclass(frozen=True)
class OnePassOptions:
    """A one-pass method's command (`patchcore`, `padim`): backbones plus the method's own settings."""

    method: str
    backbones: tuple[str, ...]
    layers: tuple[str, ...]
    settings: tuple[tuple[str, Any], ...]  # the method config's own fields (coreset, features, ...)
    normalization: str = backbones.DEFAULT_NORMALIZATION
    train: None = None  # no GLASS training settings
    compile: str = "auto"

    def config(self, backbone: str, dataset: data.DatasetConfig, resize: int) -> Any:
        """The method's config for one backbone, the dataset's image size and a class's resize."""
        info = backbones.backbone_info(backbone)
        mean, std = backbones.normalization_stats(info, self.normalization)
        layers = tuple(self.layers) or (default_layers(backbone) if self.method == "padim"
                                        else info.default_layers)
        return METHODS[self.method].config(backbone=backbone, layers=layers, imagesize=dataset.imagesize,
                                           resize=resize, mean=tuple(mean), std=tuple(std), **dict(self.settings))


@dataclass(frozen=True)
class PixelOptions:
    """A pixel method's command (`draem`, `ae`): its own settings; no backbone (one model per class)."""

    method: str
    settings: tuple[tuple[str, Any], ...]
    backbones: tuple[str, ...] = (PIXEL_BACKBONE,)
    train: None = None
    compile: str = "auto"

    def config(self, backbone: str, dataset: data.DatasetConfig, resize: int) -> Any:
        """The method's config for the dataset's image size and a class's resize."""
        return METHODS[self.method].config(imagesize=dataset.imagesize, resize=resize, **dict(self.settings))


MethodOptions = NetOptions | OnePassOptions | PixelOptions


@dataclass(frozen=True)
class RunOptions:
    """Global options."""

    results_path: Path
    gpu: tuple[int, ...]
    seed: int
    log_group: str
    log_project: str
    run_name: str
    test: str


def _fraction(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: the value must lie in [0, 1]."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise click.BadParameter(f"must be in [0, 1], got {value}")
    return value


@click.group(chain=True)
@click.option("--results_path", type=str, default="results", show_default=True)
@click.option("--gpu", type=int, default=[0], multiple=True, show_default=True,
              help="CUDA device: one runs every class on it (on the CPU when CUDA is absent); several (--gpu 0 1 2 3) "
                   "spread the classes over them, one process per device.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--log_group", type=str, default="group")
@click.option("--log_project", type=str, default="project")
@click.option("--run_name", type=str, default="test")
@click.option("--test", type=click.Choice(["ckpt", "test"]), default="ckpt", show_default=True,
              help="ckpt: train (or resume) then test; test: load each class's model and test.")
@click.option("--ray", "ray_address", type=str, default=None,
              help="Run every (backbone, class) job as a Ray task: auto (the cluster `ray start` made), local (a "
                   "new Ray instance on this machine) or HOST:PORT; default: $RAY_ADDRESS when set, else no Ray.")
@click.option("--ray_cpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPUs per Ray task when the cluster has no GPU (with GPUs each task takes one GPU).")
@click.option("--ray_retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Times a Ray task whose worker died is run again (it resumes from the class's ckpt.pth).")
@click.option("--ray_sync", type=click.Choice(["auto", "copy"]), default="auto", show_default=True,
              help="auto: workers that share --results_path's filesystem write into it, the others send their "
                   "files through the driver; copy: every worker sends them through the driver.")
def main(**kwargs: Any) -> None:
    """GLASS: train and test per-class anomaly detectors."""


@main.command("net")
@click.option("--dsc_margin", type=float, default=0.5, show_default=True)
@click.option("--train_backbone", is_flag=True)
@click.option("--backbone_names", "-b", type=str, multiple=True, default=["wideresnet50"], show_default=True)
@click.option("--layers_to_extract_from", "-le", type=str, multiple=True, default=[],
              help="Default: the backbone's stride-8 and stride-16 stages (layer2, layer3 for ResNets).")
@click.option("--pretrain_embed_dimension", type=int, default=1024, show_default=True, callback=utils.positive)
@click.option("--target_embed_dimension", type=int, default=1024, show_default=True, callback=utils.positive)
@click.option("--patchsize", type=int, default=3, show_default=True, callback=utils.positive)
@click.option("--meta_epochs", type=int, default=640, show_default=True, callback=utils.positive)
@click.option("--eval_epochs", type=int, default=1, show_default=True, callback=utils.positive)
@click.option("--dsc_layers", type=int, default=2, show_default=True, callback=utils.positive)
@click.option("--dsc_hidden", type=int, default=1024, show_default=True, callback=utils.positive)
@click.option("--pre_proj", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--mining", type=click.IntRange(0, 1), default=1, show_default=True)
@click.option("--noise", type=float, default=0.015, show_default=True, callback=utils.positive)
@click.option("--radius", type=float, default=0.75, show_default=True, callback=_fraction)
@click.option("--p", type=float, default=0.5, show_default=True, callback=_fraction)
@click.option("--lr", type=float, default=0.0001, show_default=True, callback=utils.positive)
@click.option("--svd", type=click.IntRange(0, 1), default=0, show_default=True)
@click.option("--step", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--limit", type=int, default=392, show_default=True, callback=utils.positive)
@click.option("--select", type=click.Choice(SELECTION_RULES), default="last", show_default=True,
              help="Model kept per class: the last epoch (honest) or the epoch with the best test AUROC "
                   "(the reference's rule; labelled as such in results.csv).")
@click.option("--normalization", type=click.Choice(backbones.NORMALIZATIONS),
              default=backbones.DEFAULT_NORMALIZATION, show_default=True,
              help="Input normalisation: ImageNet mean/std for every backbone (the reference's), or the "
                   "backbone's own (mean = std = 0.5 for efficientnet_lite0; timm's for others).")
@click.option("--compile", "compile_mode", type=click.Choice(COMPILE_MODES), default="auto", show_default=True,
              help="torch.compile the GAS gradient: auto = for large batches on the CPU only (on a GPU it gained "
                   "nothing); same numbers to round-off.")
def net(**kw: Any) -> tuple[str, NetOptions]:
    """Backbone, patch features, projection, discriminator and training settings."""
    names = tuple(kw["backbone_names"])
    if kw["patchsize"] % 2 == 0:
        raise click.BadParameter("must be odd (3 as the paper)", param_hint="--patchsize")
    _check_backbone_layers(names, kw["layers_to_extract_from"])
    train = TrainConfig(**{f.name: kw[f.name] for f in dataclasses.fields(TrainConfig)})
    return "method", NetOptions(
        backbones=names,
        layers=tuple(kw["layers_to_extract_from"]),
        pretrain_embed_dimension=kw["pretrain_embed_dimension"],
        target_embed_dimension=kw["target_embed_dimension"],
        patchsize=kw["patchsize"],
        dsc_layers=kw["dsc_layers"],
        dsc_hidden=kw["dsc_hidden"],
        pre_proj=kw["pre_proj"],
        train=train,
        normalization=kw["normalization"],
        compile=kw["compile_mode"],
    )


def _check_backbone_layers(names: Sequence[str], layers: Sequence[str]) -> None:
    """Unknown backbone or layer names stop here, before any work."""
    for name in names:
        valid = backbones.layer_names(name)
        for layer in layers:
            if layer not in valid:
                raise backbones.BackboneError(f"-le {layer}: not a layer of {name}; valid: {', '.join(valid)}")


def _open_fraction(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: the value must lie in (0, 1]."""
    if value is not None and not 0.0 < value <= 1.0:
        raise click.BadParameter(f"must be in (0, 1], got {value}")
    return value


def _backbone_options(default_backbone: str, layers_help: str) -> Any:
    """The backbone options every method command shares (-b, -le, --normalization)."""
    def decorate(command: Any) -> Any:
        for option in reversed((
            click.option("--backbone_names", "-b", type=str, multiple=True, default=[default_backbone],
                         show_default=True),
            click.option("--layers_to_extract_from", "-le", type=str, multiple=True, default=[], help=layers_help),
            click.option("--normalization", type=click.Choice(backbones.NORMALIZATIONS),
                         default=backbones.DEFAULT_NORMALIZATION, show_default=True,
                         help="Input normalisation: the backbone's own, or ImageNet mean/std for every backbone."),
        )):
            command = option(command)
        return command
    return decorate


def _one_pass_options(method: str, kw: dict[str, Any], settings: dict[str, Any]) -> tuple[str, OnePassOptions]:
    """Checks the backbones and layers and packs a one-pass method's options."""
    names = tuple(kw["backbone_names"])
    _check_backbone_layers(names, kw["layers_to_extract_from"])
    return "method", OnePassOptions(method=method, backbones=names, layers=tuple(kw["layers_to_extract_from"]),
                                    settings=tuple(settings.items()), normalization=kw["normalization"])


@main.command("patchcore")
@_backbone_options("wideresnet50", "Default: the backbone's stride-8 and stride-16 stages (layer2, layer3).")
@click.option("--patchsize", type=int, default=3, show_default=True, callback=utils.positive,
              help="Neighbourhood every position's features are averaged over (odd).")
@click.option("--target_embed_dimension", type=click.IntRange(min=0), default=0, show_default=True,
              help="Reduce the concatenated features to this many channels (adaptive average pooling); "
                   "0: keep every channel.")
@click.option("--coreset", type=float, default=0.1, show_default=True, callback=_open_fraction,
              help="Fraction of the training patches kept in the memory bank (greedy k-centre).")
@click.option("--projection_dim", type=click.IntRange(min=0), default=128, show_default=True,
              help="Random projection used by the coreset selection; 0: none.")
@click.option("--neighbours", type=int, default=9, show_default=True, callback=utils.positive,
              help="Bank neighbours of the nearest patch used to reweight the image score (paper's b, the nearest "
                   "patch included); 1: no reweighting (image score = highest patch score, as anomalib).")
def patchcore(**kw: Any) -> tuple[str, OnePassOptions]:
    """PatchCore: memory bank of locally aware patch features, nearest-neighbour distance."""
    if kw["patchsize"] % 2 == 0:
        raise click.BadParameter("must be odd (3 as the paper)", param_hint="--patchsize")
    names = ("patchsize", "target_embed_dimension", "coreset", "projection_dim", "neighbours")
    return _one_pass_options("patchcore", kw, {name: kw[name] for name in names})


@main.command("padim")
@_backbone_options("resnet18", "Default: the backbone's stride-4, stride-8 and stride-16 stages "
                               "(layer1-layer3 for ResNets, as the paper).")
@click.option("--features", type=int, default=100, show_default=True, callback=utils.positive,
              help="Channels kept (a random subset drawn from --seed; the paper: 100 for resnet18, 550 for "
                   "wideresnet50).")
@click.option("--covariance", type=click.Choice(COVARIANCES), default="regularised", show_default=True,
              help="regularised: sample covariance + epsilon * I (the paper's); ledoit-wolf: shrunk.")
@click.option("--epsilon", type=float, default=0.01, show_default=True, callback=utils.positive)
def padim(**kw: Any) -> tuple[str, OnePassOptions]:
    """PaDiM: a Gaussian per patch position, Mahalanobis distance."""
    names = tuple(kw["backbone_names"])
    for name in names:
        layers = tuple(kw["layers_to_extract_from"]) or default_layers(name)
        if not set(layers) <= set(backbones.layer_names(name)):
            continue  # named in the layer check below
        channels = sum(backbones.layer_channels(name, layers))
        if kw["features"] > channels:
            raise click.BadParameter(f"{kw['features']} is more than the {channels} channels of {name} "
                                     f"{', '.join(layers)}; use at most {channels}", param_hint="--features")
    names_kept = ("features", "covariance", "epsilon")
    return _one_pass_options("padim", kw, {name: kw[name] for name in names_kept})


def _pixel_options(method: str, kw: dict[str, Any]) -> tuple[str, PixelOptions]:
    """Packs a pixel method's options (the method config's own fields)."""
    return "method", PixelOptions(method=method, settings=tuple(kw.items()))


@main.command("draem")
@click.option("--recon_width", type=int, default=128, show_default=True, callback=utils.positive,
              help="Base channels of the reconstructive sub-network (doubling to 8x).")
@click.option("--disc_width", type=int, default=64, show_default=True, callback=utils.positive,
              help="Base channels of the discriminative U-Net (doubling to 8x).")
@click.option("--epochs", type=int, default=700, show_default=True, callback=utils.positive)
@click.option("--lr", type=float, default=1e-4, show_default=True, callback=utils.positive)
@click.option("--anomaly_probability", type=float, default=0.5, show_default=True, callback=_fraction,
              help="Share of training images given a synthetic anomaly (Perlin mask + AUG_PATH texture).")
@click.option("--score_window", type=int, default=21, show_default=True, callback=utils.positive,
              help="Side of the window the anomaly map is averaged over for the image score (odd).")
@click.option("--crop", type=click.IntRange(min=0), default=0, show_default=True,
              help="Train on random crops of this side (a multiple of 32; cheaper steps on a CPU); 0: the whole "
                   "training view (the paper's).")
def draem(**kw: Any) -> tuple[str, PixelOptions]:
    """DRAEM: reconstructive + discriminative networks trained on synthetic anomalies (paper defaults)."""
    if kw["score_window"] % 2 == 0:
        raise click.BadParameter("must be odd (21 as the paper)", param_hint="--score_window")
    if kw["crop"] % 32:
        raise click.BadParameter(f"{kw['crop']} is not a multiple of 32 (the U-Net's downsampling); use e.g. 128, "
                                 "or 0 for the whole image", param_hint="--crop")
    return _pixel_options("draem", kw)


@main.command("ae")
@click.option("--width", type=int, default=8, show_default=True, callback=utils.positive,
              help="Channels of the first encoder block (doubling per block, four blocks).")
@click.option("--latent", type=int, default=512, show_default=True, callback=utils.positive,
              help="Latent numbers per tile.")
@click.option("--tile", type=click.IntRange(min=0), default=0, show_default=True,
              help="Side in pixels of the tile one latent vector encodes (a multiple of 16 that divides "
                   "--imagesize); 0: the whole training view.")
@click.option("--error", type=click.Choice(ERRORS), default="mse", show_default=True,
              help="Per-pixel anomaly map: squared reconstruction error, or 1 - SSIM.")
@click.option("--epochs", type=int, default=100, show_default=True, callback=utils.positive)
@click.option("--lr", type=float, default=1e-3, show_default=True, callback=utils.positive)
def ae(**kw: Any) -> tuple[str, PixelOptions]:
    """Convolutional autoencoder: reconstruction error of a network trained on defect-free images."""
    if kw["tile"] % 16:
        raise click.BadParameter(f"{kw['tile']} is not a multiple of 16 (the encoder's downsampling); "
                                 "use e.g. 128, or 0 for the whole image", param_hint="--tile")
    return _pixel_options("ae", kw)


@main.command("dataset")
@click.argument("name", type=click.Choice(data.DATASET_NAMES))
@click.argument("data_path", type=click.Path(file_okay=False, path_type=Path))
@click.argument("aug_path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--subdatasets", "-d", multiple=True, type=str, required=True)
@click.option("--batch_size", default=8, type=int, show_default=True, callback=utils.positive)
@click.option("--num_workers", default=data.default_num_workers(), type=click.IntRange(min=0), show_default=True)
@click.option("--resize", default=288, type=int, show_default=True, callback=utils.positive,
              help="Shorter side before the centre crop; mvtec toothbrush and wood use round(imagesize*329/288) "
                   "instead, as the reference.")
@click.option("--imagesize", default=288, type=int, show_default=True, callback=utils.positive)
@click.option("--rotate_degrees", default=0, type=int)
@click.option("--translate", default=0, type=float)
@click.option("--scale", default=0.0, type=float)
@click.option("--brightness", default=0.0, type=float)
@click.option("--contrast", default=0.0, type=float)
@click.option("--saturation", default=0.0, type=float)
@click.option("--gray", default=0.0, type=float, callback=_fraction)
@click.option("--hflip", default=0.0, type=float, callback=_fraction)
@click.option("--vflip", default=0.0, type=float, callback=_fraction)
@click.option("--blur", default=0.0, type=click.FloatRange(0.0, 8.0), show_default=True,
              help="Blur half the training images with a Gaussian of standard deviation drawn in 0..BLUR pixels, "
                   "so that a lens slightly out of focus is not flagged; 0: none.")
@click.option("--jpeg", default=0, type=click.IntRange(0, 100), show_default=True,
              help="JPEG-compress half the training images at a quality drawn in JPEG..100 (e.g. 30), so that "
                   "video compressed harder than the training footage is not flagged; 0: none.")
@click.option("--distribution", default=0, type=click.IntRange(0, 4), show_default=True,
              help="0 table, 1 judge now (and save), 2 manifold, 3 hypersphere, 4 opposite of table.")
@click.option("--mean", default=0.5, type=float, show_default=True)
@click.option("--std", default=0.1, type=float, show_default=True)
@click.option("--fg", default=1, type=click.IntRange(0, 1), show_default=True)
@click.option("--rand_aug", default=1, type=click.IntRange(0, 1), show_default=True)
@click.option("--downsampling", default=8, type=int, show_default=True, callback=utils.positive)
@click.option("--augment", is_flag=True)
@click.option("--resize_masks", is_flag=True,
              help="Resize ground-truth masks whose size differs from their image's (nearest neighbour); "
                   "without it such a mask is an error naming the file.")
@click.option("--holdout", default=data.DEFAULT_HOLDOUT, type=float, show_default=True,
              help=f"Fraction of train/good held out of training (at least {data.MIN_HOLDOUT} images, evenly "
                   "spaced over the sorted files) to calibrate the image and pixel thresholds on; 0: none "
                   "(thresholds from training-image scores, optimistic).")
@click.option("--train_crop", default="centre", type=click.Choice(data.TRAIN_CROPS), show_default=True,
              help="Where training cuts its --imagesize square from each image scaled to --resize: the centre (the "
                   "reference), or a random place per image and epoch, so that frames wider or taller than the "
                   "square are learnt whole (e.g. --resize 720 --imagesize 256: 1280x720 frames at full "
                   "resolution). Test images keep the centre crop.")
def dataset(**kw: Any) -> tuple[str, data.DatasetConfig]:
    """Dataset NAME at DATA_PATH with LAS textures from AUG_PATH (DTD's images folder)."""
    explicit = {name for name in ("resize", "imagesize")
                if click.get_current_context().get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    kw["subdatasets"] = tuple(kw["subdatasets"])
    return "dataset", (data.DatasetConfig(**kw), explicit)


@main.result_callback()
def run(methods: Sequence[tuple[str, Any]], **global_options: Any) -> None:
    """Runs every requested class: train (or resume, or fit) and test, or test only."""
    ray_cfg = ray_config(global_options.pop("ray_address"), global_options.pop("ray_cpus"),
                         global_options.pop("ray_retries"), global_options.pop("ray_sync"))
    opts = RunOptions(**{**global_options, "results_path": Path(global_options["results_path"]),
                         "gpu": tuple(global_options["gpu"])})
    chosen: list[MethodOptions] = [value for key, value in methods if key == "method"]
    datasets = [value for key, value in methods if key == "dataset"]
    if not datasets:
        raise common.ConfigError("the 'dataset' command is required: ... dataset -d CLASS NAME DATA_PATH AUG_PATH")
    if len(chosen) > 1:
        raise common.ConfigError("one method command per run (net, patchcore, padim, draem or ae); run them one after "
                                 "the other, or use benchmarks/compare_methods.py")
    dataset_cfg, explicit = datasets[-1]
    method_opts = chosen[0] if chosen else None
    if opts.test == "ckpt" and method_opts is None:
        raise common.ConfigError("--test ckpt trains a model and needs a method command: net (GLASS), patchcore, "
                                 "padim, draem or ae (or use --test test)")
    devices = None if ray_cfg is not None else gpu_devices(opts.gpu)
    if ray_cfg is not None or devices is not None:
        jobs = plan_jobs(opts, method_opts, dataset_cfg, explicit, validate=False)  # each job checks its class
        run_fanned_out(jobs, opts, dataset_cfg, ray_cfg, devices)
        return
    device = common.select_device(opts.gpu)
    jobs = plan_jobs(opts, method_opts, dataset_cfg, explicit)
    table = opts.results_path / "results.csv"
    rows = []
    for job in jobs:
        row = run_job(job, opts, dataset_cfg, device)
        rows.append(row)
        # Merged into the table (under its lock) as soon as the class is finished: rows of other classes,
        # from earlier or concurrent runs, are kept, and a run killed later still leaves this one.
        utils.update_results_csv(table, [row])
    click.echo(utils.format_table(rows))
    click.echo(f"results: {table}")


@dataclass(frozen=True)
class Job:
    """One (method, backbone, class) unit of work."""

    index: int
    classname: str
    class_dir: Path
    net: Any  # the method's config (model.NetConfig for GLASS)
    train: TrainConfig | None  # GLASS's training settings
    compile: str = "auto"
    method: str = DEFAULT_METHOD
    fit: bool = False  # train (GLASS) or fit (one-pass methods) before testing

    @property
    def tag(self) -> str:
        """Where the job's outputs go below models/ and eval/: backbone_<i> (GLASS) or <method>/backbone_<i>."""
        return method_tag(self.method, self.index)


def method_tag(method: str, index: int | str) -> str:
    """The folder of a method's backbone_<index> models below models/ (and eval/): GLASS's is backbone_<i>,
    as the reference's, every other method's <method>/backbone_<i>; index "*" gives the glob of all of them."""
    return f"backbone_{index}" if method == DEFAULT_METHOD else f"{method}/backbone_{index}"


def plan_jobs(opts: RunOptions, method_opts: MethodOptions | None, dataset_cfg: data.DatasetConfig,
              explicit: set[str], validate: bool = True) -> list[Job]:
    """Validates everything (backbones, layers, sizes, folders, checkpoints and, with `validate`, every image)
    before any work starts."""
    models_dir = opts.results_path / "models"
    jobs = []
    for classname in dataset_cfg.subdatasets:
        key = f"{dataset_cfg.name}_{classname}"
        if method_opts is not None and opts.test == "ckpt":
            resize = class_resize(dataset_cfg, classname, log=True)
            for i, backbone in enumerate(method_opts.backbones):
                cfg = method_opts.config(backbone, dataset_cfg, resize)
                _check_geometry(cfg, dataset_cfg, las=method_opts.method == DEFAULT_METHOD)  # LAS on GLASS's grid
                jobs.append(Job(i, classname, models_dir / method_tag(method_opts.method, i) / key, cfg,
                                method_opts.train, method_opts.compile, method_opts.method, fit=True))
        else:
            only = method_opts.method if method_opts is not None else None
            jobs.extend(_stored_jobs(models_dir, key, classname, dataset_cfg, explicit, only))
    las = method_opts is None or uses_las(method_opts.method)  # only these read textures and fg masks
    for classname in dataset_cfg.subdatasets if validate else ():  # layout errors and undecodable images
        validate_class_images(dataset_cfg, classname, train=opts.test == "ckpt", las=las)  # surface here
    return jobs


def validate_class_images(dataset_cfg: data.DatasetConfig, classname: str, train: bool, las: bool = True) -> int:
    """Checks a class's folders and decodes every image it will read: test images and ground-truth masks,
    and when training, train/good (held-out images included) and, with LAS (GLASS), foreground masks.
    DatasetError naming the first file that does not decode; returns the number of files decoded."""
    test_set = build_dataset(dataset_cfg, classname, "test", (0.5,) * 3, (0.5,) * 3, seed=0, las=False)
    paths = [p for s in test_set.samples for p in (s.image_path, s.mask_path) if p is not None]
    if train:
        train_set = build_dataset(dataset_cfg, classname, "train", (0.5,) * 3, (0.5,) * 3, seed=0, las=las)
        paths += [p for s in train_set.samples for p in (s.image_path, s.fg_path) if p is not None]
        paths += train_set.heldout_paths
    for path in paths:
        decode_image(path)
    return len(paths)


def decode_image(path: Path) -> None:
    """Decodes an image fully (a truncated or corrupt file raises DatasetError naming it). JPEGs decode at
    1/8 scale: every entropy-coded block is still read (truncation and stream errors are caught) at about
    half the cost; PNGs decode fully (about 12 ms for a 900 x 900 RGB PNG on this 2-core machine)."""
    try:
        with PIL.Image.open(path) as img:
            if img.format == "JPEG":
                img.draft(img.mode, (max(img.width // 8, 1), max(img.height // 8, 1)))
            img.load()
    except (OSError, PIL.UnidentifiedImageError, ValueError, SyntaxError, EOFError) as exc:
        raise data.DatasetError(f"cannot decode image {path} ({first_line(exc)}); replace or remove the file") \
            from exc


def class_resize(dataset_cfg: data.DatasetConfig, classname: str, log: bool = False) -> int:
    """The resize one class is trained with: --resize, or the reference's override for the class
    (datasets.base.forced_resize); recorded in the checkpoint, so that `--test test` uses it too."""
    forced = forced_resize(dataset_cfg.name, classname, dataset_cfg.imagesize)
    if forced is None:
        return dataset_cfg.resize
    if log:
        LOGGER.info("%s_%s: resize %d instead of --resize %d (round(imagesize * 329 / 288), the reference's "
                    "rule for MVTec %s)", dataset_cfg.name, classname, forced, dataset_cfg.resize, classname)
    return forced


def _stored_jobs(models_dir: Path, key: str, classname: str, dataset_cfg: data.DatasetConfig,
                 explicit: set[str], only: str | None = None) -> list[Job]:
    """Test-only jobs from the model directories of a class (configuration read from checkpoints): every
    method's, or only `only`'s."""
    methods = [only] if only else list(METHODS)
    class_dirs = sorted(d for method in methods for d in models_dir.glob(f"{method_tag(method, '*')}/{key}"))
    class_dirs = [d for d in class_dirs if final_checkpoint_path(d) is not None]
    if not class_dirs:
        raise CheckpointError(f"{models_dir}/{method_tag(only or DEFAULT_METHOD, '*')}/{key}: no trained model; "
                              "train it first with --test ckpt or pass the --results_path it was trained in")
    jobs = []
    for class_dir in class_dirs:
        path = final_checkpoint_path(class_dir)
        stored = load_checkpoint(path)
        cfg = config_from_checkpoint(stored, str(path))
        for name in sorted(explicit):
            fits = {getattr(dataset_cfg, name)}
            if name == "resize":  # an explicit --resize also fits a model trained with the class's override
                fits.add(class_resize(dataset_cfg, classname))
            if getattr(cfg, name) not in fits:
                raise common.ConfigError(
                    f"--{name} {getattr(dataset_cfg, name)} conflicts with {class_dir} trained at "
                    f"{getattr(cfg, name)}; drop --{name} (the checkpoint's value is used)"
                )
        index = int(class_dir.parent.name.split("_")[-1])
        method = stored.get("method", DEFAULT_METHOD)
        jobs.append(Job(index, classname, class_dir, cfg, None, method=method))
    return jobs


def uses_las(method: str) -> bool:
    """True for the methods that train on LAS images (textures and foreground masks): GLASS and DRAEM."""
    return method == DEFAULT_METHOD or METHODS[method].model.synthesises_anomalies


def _check_geometry(cfg: Any, dataset_cfg: data.DatasetConfig, las: bool = True) -> None:
    """Image size (and for GLASS, the LAS downsampling) must match the backbone's feature grid; a pixel
    method's image size must be a multiple of its network's downsampling."""
    if cfg.backbone == PIXEL_BACKBONE:
        _check_pixel_geometry(cfg)
        return
    info = backbones.backbone_info(cfg.backbone)
    strides = backbones.layer_strides(cfg.backbone, cfg.layers)
    largest = max(strides)
    if cfg.imagesize % largest:
        raise common.ConfigError(
            f"--imagesize {cfg.imagesize} is not divisible by {largest}, the stride of {info.name}'s layer "
            f"{cfg.layers[strides.index(largest)]}; use e.g. {cfg.imagesize // largest * largest or largest}"
        )
    if las and dataset_cfg.downsampling != strides[0]:
        raise common.ConfigError(
            f"--downsampling {dataset_cfg.downsampling} does not match stride {strides[0]} of the first layer "
            f"{cfg.layers[0]}; pass --downsampling {strides[0]}"
        )
    if cfg.resize < cfg.imagesize:
        raise common.ConfigError(f"--resize {cfg.resize} is smaller than --imagesize {cfg.imagesize}; "
                                 "resize must be >= imagesize (centre crop)")


def _check_pixel_geometry(cfg: Any) -> None:
    """A pixel method's image size must be whole multiples of its network's downsampling."""
    multiple = cfg.input_multiple
    if cfg.imagesize % multiple:
        what = "--tile" if getattr(cfg, "tile", 0) else "the network's downsampling"
        raise common.ConfigError(f"--imagesize {cfg.imagesize} is not a multiple of {multiple} ({what}); "
                                 f"use e.g. {max(cfg.imagesize // multiple, 1) * multiple}")
    if cfg.resize < cfg.imagesize:
        raise common.ConfigError(f"--resize {cfg.resize} is smaller than --imagesize {cfg.imagesize}; "
                                 "resize must be >= imagesize (centre crop)")


def job_dataset_config(dataset_cfg: data.DatasetConfig, job: Job) -> data.DatasetConfig:
    """The dataset options of a job: image size and resize are the model's (its class's resize, or the
    checkpoint's when testing only), so that training and testing see the same pixels."""
    return dataclasses.replace(dataset_cfg, imagesize=job.net.imagesize, resize=job.net.resize)


def run_job(job: Job, opts: RunOptions, dataset_cfg: data.DatasetConfig, device: torch.device,
            checkpoint_saved: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Trains or fits (when asked) and tests one class with one method and backbone; returns its results row.
    `checkpoint_saved(path)` is called after each epoch's ckpt.pth of GLASS, DRAEM and the autoencoder (scale_out
    sends it to the driver)."""
    utils.fix_seeds(opts.seed)
    key = f"{dataset_cfg.name}_{job.classname}"
    LOGGER.info("class %s, %s (%s)", key, job.tag, job.net.backbone)
    norm = (job.net.mean, job.net.std)
    sized = job_dataset_config(dataset_cfg, job)
    test_set = build_dataset(sized, job.classname, "test", *norm, seed=opts.seed, las=False)
    pin = device.type == "cuda"
    test_loader = data.build_dataloader(test_set, sized, opts.seed, shuffle=False, pin_memory=pin)
    model = build_model(job.net)
    job.class_dir.mkdir(parents=True, exist_ok=True)
    if job.fit and job.method == DEFAULT_METHOD:
        train_glass(job, opts, dataset_cfg, sized, model, device, test_loader, checkpoint_saved)
    elif job.fit:
        # One-pass methods read the clean images once in order; pixel methods train for epochs on shuffled
        # batches, DRAEM's with LAS anomalies.
        train_set = build_dataset(sized, job.classname, "train", *norm, seed=opts.seed,
                                  las=model.synthesises_anomalies)
        _warn_without_holdout(key, train_set, sized)
        _warn_centre_crop(key, train_set, sized)
        if job.method == "padim" and sized.train_crop == "random":
            LOGGER.warning("%s: --train_crop random with padim: its per-position statistics then mix every place "
                           "in the frame (right for a surface moving past the camera, not for aligned objects)", key)
        loader = data.build_dataloader(train_set, sized, opts.seed, shuffle=isinstance(model, PixelModel),
                                       pin_memory=pin)
        fit_class(model, loader, job.class_dir, device, opts.seed, train_set.heldout_paths,
                  meta={"dataset": sized.name, "class": job.classname, "train_images": len(train_set),
                        "holdout": sized.holdout, "dataset_options": sized.training_options()},
                  checkpoint_saved=checkpoint_saved)
    vis_dir = opts.results_path / "eval" / job.tag / key
    outcome: ClassOutcome = evaluate_class(model, job.class_dir, test_loader, device, vis_dir)
    if outcome.calibration:
        LOGGER.info("%s: %s", key, calibration.describe(outcome.calibration))
    else:
        LOGGER.info("%s: no calibrated thresholds in the checkpoint (trained before --holdout existed); the "
                    "engine uses mean + 3 std of the training-image scores", key)
    return {"method": job.method, "class": row_class(job, key), **outcome.metrics, "epoch": outcome.epoch,
            "selection": outcome.selection}


def row_class(job: Job, key: str) -> str:
    """A job's name in results.csv: <dataset>_<class>, with /backbone_<i> for every backbone but the first."""
    return key if job.index == 0 else f"{key}/backbone_{job.index}"


def _warn_without_holdout(key: str, train_set: Any, sized: data.DatasetConfig) -> None:
    """Says when no image could be held out for calibration."""
    warning = None if train_set.heldout_paths else data.holdout_warning(len(train_set), sized.holdout)
    if warning:
        LOGGER.warning("%s: %s", key, warning)


def centre_crop_share(width: int, height: int) -> float:
    """Share of an image that a centred square of its shorter side keeps (what the frame's shape hides from the
    centre crop, before the --resize/--imagesize margin that square images lose too)."""
    return min(width, height) / max(width, height)


def _warn_centre_crop(key: str, train_set: Any, sized: data.DatasetConfig) -> None:
    """Says when the centre crop hides much of each training image (frames much wider than tall, e.g. from
    video_to_dataset; judged on the first image): the engine scores whole frames, so their sides were never learnt."""
    if sized.train_crop != "centre" or not train_set.samples:
        return
    try:
        with PIL.Image.open(train_set.samples[0].image_path) as image:  # the header only
            width, height = image.size
    except OSError:  # unreadable: loading the dataset says so in one line
        return
    share = centre_crop_share(width, height)
    if share < 2 / 3:
        LOGGER.warning("%s: training images are %dx%d: the centre crop shows the model at most %.0f %% of each; "
                       "frames are scored whole, so their sides are never learnt: --train_crop random learns whole "
                       "frames (right for a moving surface; keep centre for objects aligned in the middle)",
                       key, width, height, 100.0 * share)


def train_glass(job: Job, opts: RunOptions, dataset_cfg: data.DatasetConfig, sized: data.DatasetConfig,
                model: GlassModel, device: torch.device, test_loader: torch.utils.data.DataLoader,
                checkpoint_saved: Callable[[Path], None] | None = None) -> None:
    """Trains (or resumes) GLASS on one class; `checkpoint_saved(ckpt.pth)` after every epoch."""
    key = f"{dataset_cfg.name}_{job.classname}"
    norm = (job.net.mean, job.net.std)
    train_set = build_dataset(sized, job.classname, "train", *norm, seed=opts.seed, las=True)
    clean_set = build_dataset(sized, job.classname, "train", *norm, seed=opts.seed, las=False)
    svd, how = decide_svd(opts, dataset_cfg, job, clean_set)
    LOGGER.info("%s: %s (svd=%d)", key, how, svd)
    _warn_without_holdout(key, train_set, sized)
    _warn_centre_crop(key, train_set, sized)
    trainer = GLASS(model, job.train, device, job.class_dir, svd,
                    meta={"dataset": sized.name, "class": job.classname, "train_images": len(train_set),
                          "holdout": sized.holdout, "dataset_options": sized.training_options()},
                    compile_mode=job.compile, heldout=train_set.heldout_paths)
    pin = device.type == "cuda"
    trainer.train(data.build_dataloader(train_set, sized, opts.seed, shuffle=True, pin_memory=pin),
                  data.build_dataloader(clean_set, sized, opts.seed, shuffle=False, pin_memory=pin),
                  test_loader,
                  cache_features=not (sized.augments_clean_images or job.train.train_backbone),
                  after_epoch=None if checkpoint_saved is None else
                  lambda epoch: checkpoint_saved(job.class_dir / LATEST_NAME))


def decide_svd(opts: RunOptions, cfg: data.DatasetConfig, job: Job, clean_set: Any) -> tuple[int, str]:
    """Manifold (0) or hypersphere (1) for a class, by --distribution mode (table beside the results).

    The judge averages the training images as the reference's judge run (--distribution 1) loads them:
    squashed to --resize x --resize (no per-class override there), centre-cropped to --imagesize.
    """
    table = opts.results_path / f"{cfg.name}_distribution.csv"
    key = f"{cfg.name}_{job.classname}"

    def judge() -> int:
        """Spectral judge of the mean training image, recorded in the table."""
        mean_image = distribution.mean_training_image(clean_set.image_paths, size=cfg.resize, crop=cfg.imagesize)
        svd = distribution.judge_distribution(mean_image)
        rows = distribution.read_table(table) if table.exists() else {}
        rows[key] = svd
        distribution.write_table(table, rows)
        return svd

    return distribution.resolve_svd(cfg.distribution, table, key, judge)


# ------------------------------------------------------------------ fanned out: Ray, or several GPUs

class ClassFailures(common.ConfigError):
    """Classes of a fanned-out run that failed (the others finished); each one's error is in results.csv."""


@dataclass(frozen=True)
class ClassResult:
    """What a fanned-out job hands back: its results row and the class's manifold/hypersphere entry, if any."""

    row: dict[str, Any]
    svd: int | None


def ray_config(address: str | None, cpus: int, retries: int, sync: str) -> scale_out.RayConfig | None:
    """The Ray settings when --ray (or $RAY_ADDRESS) asks for Ray, else None."""
    address = scale_out.ray_address(address)
    return None if address is None else scale_out.RayConfig(address, cpus, retries, sync)


def gpu_devices(gpu: Sequence[int]) -> list[str] | None:
    """The CUDA devices to spread classes over when --gpu lists more than one (None for one device); without
    CUDA that is an error, not a silent fan-out over the CPU."""
    if len(gpu) < 2:
        return None
    listed = " ".join(str(index) for index in gpu)
    if not torch.cuda.is_available():
        raise common.ConfigError(f"--gpu {listed}: CUDA is not available on this machine, so classes cannot be "
                                 "spread over GPUs; pass one --gpu (it runs on the CPU) or use --ray")
    count = torch.cuda.device_count()
    for index in gpu:
        if not 0 <= index < count:
            raise common.ConfigError(f"--gpu {listed}: there is no CUDA device {index} (this machine has {count}); "
                                     f"list indices below {count}")
    return [f"cuda:{index}" for index in gpu]


def run_fanned_out(jobs: Sequence[Job], opts: RunOptions, dataset_cfg: data.DatasetConfig,
                   ray_cfg: scale_out.RayConfig | None, devices: Sequence[str] | None) -> None:
    """Runs the jobs as Ray tasks (ray_cfg) or one process per device; results.csv as a sequential run writes it.

    Paths become absolute (workers may start in another folder). A class whose job fails (bad data) gets a
    row with its error in the `notes` column and the others finish; then ClassFailures names the failures.
    """
    opts = dataclasses.replace(opts, results_path=opts.results_path.resolve())
    opts.results_path.mkdir(parents=True, exist_ok=True)
    jobs = [dataclasses.replace(job, class_dir=job.class_dir.resolve()) for job in jobs]
    dataset_cfg = dataclasses.replace(dataset_cfg, data_path=Path(dataset_cfg.data_path).resolve(),
                                      aug_path=Path(dataset_cfg.aug_path).resolve())
    tasks = [class_task(job, opts, dataset_cfg) for job in jobs]
    recorder = ClassRecorder(jobs, opts, dataset_cfg)
    if ray_cfg is not None:
        if len(opts.gpu) > 1:
            LOGGER.info("--ray: Ray gives each task its GPU; --gpu %s is not used", " ".join(map(str, opts.gpu)))
        scale_out.run_on_ray(tasks, opts.results_path, recorder.record, ray_cfg, desc="classes")
    else:
        scale_out.run_on_devices(tasks, opts.results_path, recorder.record, devices, desc="classes")
    if recorder.rows:
        click.echo(utils.format_table(recorder.rows))
    click.echo(f"results: {recorder.table}")
    recorder.raise_failures()


def distribution_table_name(dataset_cfg: data.DatasetConfig) -> str:
    """The manifold/hypersphere table's file name in --results_path (decide_svd)."""
    return f"{dataset_cfg.name}_distribution.csv"


def class_task(job: Job, opts: RunOptions, dataset_cfg: data.DatasetConfig) -> scale_out.Task:
    """A job as a scale_out task: it reads the class folder (to resume) and the distribution table, and writes
    the class folder and its evaluation pictures."""
    key = f"{dataset_cfg.name}_{job.classname}"
    class_dir = job.class_dir.relative_to(opts.results_path).as_posix()
    return scale_out.Task(name=f"{key} {job.tag}", run=functools.partial(run_class, job, opts, dataset_cfg),
                          inputs=(class_dir, distribution_table_name(dataset_cfg)),
                          outputs=(class_dir, f"eval/{job.tag}/{key}"), cost=class_cost(job, dataset_cfg))


def class_cost(job: Job, dataset_cfg: data.DatasetConfig) -> float:
    """A job's expected run time for scheduling: its training images (test images for a test-only job), listed
    (not decoded) here; 0 when the driver cannot list them (the job itself reports why)."""
    try:
        images = build_dataset(dataset_cfg, job.classname, "train" if job.fit else "test", (0.5,) * 3, (0.5,) * 3,
                               seed=0, las=False)
    except (UserError, OSError):
        return 0.0
    return float(len(images))


def run_class(job: Job, opts: RunOptions, dataset_cfg: data.DatasetConfig,
              context: scale_out.WorkerContext) -> ClassResult:
    """A job on a worker: checks its class's images (a bad file fails this class alone), then run_job under the
    worker's results root on the worker's device."""
    validate_class_images(dataset_cfg, job.classname, train=job.fit, las=uses_las(job.method))
    local_opts = dataclasses.replace(opts, results_path=context.root)
    local_job = dataclasses.replace(job, class_dir=context.root / job.class_dir.relative_to(opts.results_path))
    row = run_job(local_job, local_opts, dataset_cfg, torch.device(context.device), context.checkpoint_saved)
    table = context.root / distribution_table_name(dataset_cfg)
    key = f"{dataset_cfg.name}_{job.classname}"
    svd = distribution.read_table(table).get(key) if job.fit and table.is_file() else None
    return ClassResult(row, svd)


class ClassRecorder:
    """The driver's side of a fanned-out run: each finished job's row into results.csv (in job order, as
    scale_out emits), its manifold/hypersphere entry into the table, each failure logged and noted."""

    def __init__(self, jobs: Sequence[Job], opts: RunOptions, dataset_cfg: data.DatasetConfig) -> None:
        self.jobs = jobs
        self.dataset_cfg = dataset_cfg
        self.table = opts.results_path / "results.csv"
        self.distribution_table = opts.results_path / distribution_table_name(dataset_cfg)
        self.rows: list[dict[str, Any]] = []
        self.failures: list[tuple[str, str]] = []

    def record(self, index: int, outcome: scale_out.Outcome) -> None:
        """Writes one job's row (or its failure) into results.csv."""
        job = self.jobs[index]
        key = f"{self.dataset_cfg.name}_{job.classname}"
        if outcome.error is None:
            result: ClassResult = outcome.value
            if result.svd is not None:
                distribution.merge_entry(self.distribution_table, key, result.svd)
            row = result.row
            self.rows.append(row)
        else:
            name = row_class(job, key)
            LOGGER.error("%s (%s) failed: %s", name, job.method, outcome.error)
            self.failures.append((name, outcome.error))
            row = {"method": job.method, "class": name, **dict.fromkeys(utils.METRIC_NAMES), "epoch": None,
                   "selection": None, utils.NOTES_FIELD: f"failed: {outcome.error}"}
        utils.update_results_csv(self.table, [row])

    def raise_failures(self) -> None:
        """ClassFailures naming the failed classes (the first one's error), when there are any."""
        if self.failures:
            summary = scale_out.failure_summary(self.failures, len(self.jobs), "jobs")
            raise ClassFailures(f"{summary}; see the notes column of {self.table}")


def expand_gpu_list(argv: Sequence[str]) -> list[str]:
    """`--gpu 0 1 2 3` (the reference's spelling) as Click reads it, `--gpu 0 --gpu 1 --gpu 2 --gpu 3`: the
    integers that follow --gpu among the global options (no command is named by an integer)."""
    out: list[str] = []
    listing = False  # the previous argument was a device of --gpu
    for position, arg in enumerate(argv):
        if arg in main.commands:
            return out + list(argv[position:])
        if listing and arg.isdigit():
            out += ["--gpu", arg]
            continue
        listing = position > 0 and argv[position - 1] == "--gpu"
        out.append(arg)
    return out


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point: bad input ends with a one-line error and exit code 2, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    common.keep_freed_memory()
    LOGGER.info("command line: %s", " ".join(sys.argv if argv is None else ["main.py", *argv]))
    argv = expand_gpu_list(sys.argv[1:] if argv is None else argv)
    # loader_error_message drops the worker traceback torch prepends to errors raised in workers.
    return utils.run_command(main, argv, "choose a writable --results_path", data.loader_error_message)


if __name__ == "__main__":
    sys.exit(cli())
