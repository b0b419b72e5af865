"""datasets.base: items, LAS synthesis, loaders, held-out images, one-line dataset errors (tiny data)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import preprocess
from datasets.base import (
    DATASET_NAMES,
    DatasetConfig,
    DatasetError,
    Sample,
    build_dataloader,
    holdout_count,
    holdout_indices,
    holdout_warning,
    loader_error_message,
    split_holdout,
    worker_init_fn,
)
from datasets.registry import build_dataset
from perlin import max_pool_mask
from tests.datasets.tiny_data import (
    CLASS,
    DOWN,
    GOOD_COLOUR,
    GRID,
    MEAN,
    RESIZE,
    SIZE,
    STD,
    assert_one_line_error,
    config,
    make_mvtec,
    make_textures,
    noise,
    save,
)


@pytest.fixture()
def mvtec(tmp_path: Path) -> tuple[Path, Path]:
    return make_mvtec(tmp_path / "mvtec"), make_textures(tmp_path / "dtd")


# ---- items -----------------------------------------------------------------------------------


def test_train_item_shapes_types_ranges(mvtec: tuple[Path, Path]) -> None:
    ds = build_dataset(config(*mvtec), CLASS, "train", MEAN, STD, seed=0)
    assert len(ds) == 4
    item = ds[1]
    assert set(item) == {"image", "aug", "mask_s", "mask", "is_anomaly", "image_path", "idx"}
    assert item["image"].shape == item["aug"].shape == (3, SIZE, SIZE)
    assert item["image"].dtype == item["aug"].dtype == item["mask_s"].dtype == torch.float32
    assert item["mask_s"].shape == (GRID, GRID)
    assert set(item["mask_s"].unique().tolist()) <= {0.0, 1.0} and item["mask_s"].max() == 1
    assert item["mask"].shape == (SIZE, SIZE) and item["mask"].dtype == torch.float32  # full size (DRAEM)
    np.testing.assert_array_equal(max_pool_mask(item["mask"].numpy(), DOWN), item["mask_s"].numpy())
    changed = (item["aug"] != item["image"]).any(dim=0)
    assert not changed[item["mask"] == 0].any()  # LAS changes only the masked pixels
    assert item["is_anomaly"] == 0 and item["idx"] == 1
    assert item["image_path"].endswith("001.png")
    raw = item["image"] * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_las_mask_pooling_and_clean_outside_mask(mvtec: tuple[Path, Path]) -> None:
    ds = build_dataset(config(*mvtec, fg=0), CLASS, "train", MEAN, STD, seed=3)
    rng = np.random.default_rng(0)
    clean = ds[0]["image"].numpy()
    for _ in range(5):
        aug, mask, pooled = ds.synthesize(clean, None, rng)
        np.testing.assert_array_equal(pooled, max_pool_mask(mask, DOWN))
        assert pooled.max() == 1
        outside = np.broadcast_to(mask == 0, aug.shape)
        np.testing.assert_array_equal(aug[outside], clean[outside])
        assert not np.allclose(aug[~outside], clean[~outside])
    for idx in range(len(ds)):  # through __getitem__: the changed pixels pool to mask_s
        item = ds[idx]
        changed = (item["aug"] != item["image"]).any(dim=0).numpy().astype(np.float32)
        np.testing.assert_array_equal(max_pool_mask(changed, DOWN), item["mask_s"].numpy())


def test_las_blend_factor_within_beta_range(mvtec: tuple[Path, Path]) -> None:
    """aug = img + (1 - beta) * (texture - img) on the mask, with beta clipped to [0.2, 0.8]."""
    # rand_aug=0 and no augmentation flags: the texture depends only on the generator's pick.
    ds = build_dataset(config(*mvtec, fg=0, std=5.0, rand_aug=0), CLASS, "train", MEAN, STD, seed=0)
    clean = ds[0]["image"].numpy()
    for seed in range(6):
        texture = ds._texture(np.random.default_rng(seed))
        aug, mask, _ = ds.synthesize(clean, None, np.random.default_rng(seed))
        on = np.broadcast_to(mask == 1, aug.shape) & (np.abs(texture - clean) > 0.5)
        weight = (aug[on] - clean[on]) / (texture[on] - clean[on])
        assert np.ptp(weight) < 1e-4
        assert 0.2 - 1e-4 <= weight.mean() <= 0.8 + 1e-4


def test_foreground_mask_restricts_las(mvtec: tuple[Path, Path]) -> None:
    ds = build_dataset(config(*mvtec), CLASS, "train", MEAN, STD, seed=0)
    # Left 24 of 48 columns; after resize to 36x43 and crop to 32: columns < ~14.5 are foreground.
    for idx in range(len(ds)):
        for _ in range(3):
            item = ds[idx]
            changed = (item["aug"] != item["image"]).any(dim=0)
            assert changed[:, 16:].sum() == 0
            assert item["mask_s"][:, 2:].sum() == 0
            assert item["mask_s"].sum() > 0


def test_same_seed_same_items_new_draw_each_epoch(mvtec: tuple[Path, Path]) -> None:
    cfg = config(*mvtec)
    first = build_dataset(cfg, CLASS, "train", MEAN, STD, seed=11)
    second = build_dataset(cfg, CLASS, "train", MEAN, STD, seed=11)
    other = build_dataset(cfg, CLASS, "train", MEAN, STD, seed=12)
    a, b, c = first[0], second[0], other[0]
    for key in ("image", "aug", "mask_s"):
        assert torch.equal(a[key], b[key])
    assert torch.equal(a["image"], c["image"])
    assert not torch.equal(a["aug"], c["aug"])
    assert torch.equal(first[0]["aug"], a["aug"])  # same epoch, same draw
    first.set_epoch(1)  # the next epoch draws a fresh LAS for the same image
    again = first[0]
    assert torch.equal(again["image"], a["image"])
    assert not torch.equal(again["aug"], a["aug"])


def test_global_rng_not_consumed(mvtec: tuple[Path, Path]) -> None:
    ds = build_dataset(config(*mvtec, rand_aug=1, hflip=0.5), CLASS, "train", MEAN, STD, seed=0)
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    expected_torch, expected_np = torch.rand(1), np.random.rand()  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    ds[0]
    assert torch.equal(torch.rand(1), expected_torch) and np.random.rand() == expected_np  # noqa: NPY002


def test_dataloader_with_workers_is_reproducible(mvtec: tuple[Path, Path]) -> None:
    cfg = config(*mvtec, num_workers=2, batch_size=2)
    ds = build_dataset(cfg, CLASS, "train", MEAN, STD, seed=5)
    runs = []
    for _ in range(2):
        loader = build_dataloader(ds, cfg, seed=5, shuffle=True)
        runs.append([(b["idx"].clone(), b["aug"].clone(), b["mask_s"].clone()) for b in loader])
    assert len(runs[0]) == 2
    for (idx_a, aug_a, m_a), (idx_b, aug_b, m_b) in zip(*runs):
        assert torch.equal(idx_a, idx_b) and torch.equal(aug_a, aug_b) and torch.equal(m_a, m_b)


def test_worker_init_fn_seeds_numpy_from_torch() -> None:
    torch.manual_seed(42)
    worker_init_fn(0)
    assert np.random.rand() == np.random.RandomState(42).rand()  # noqa: NPY002


def test_clean_only_items_match_las_items(mvtec: tuple[Path, Path]) -> None:
    cfg = config(*mvtec)
    clean = build_dataset(cfg, CLASS, "train", MEAN, STD, seed=0, las=False)
    las = build_dataset(cfg, CLASS, "train", MEAN, STD, seed=1)
    item = clean[2]
    assert set(item) == {"image", "is_anomaly", "image_path", "idx"}
    assert torch.equal(item["image"], las[2]["image"])
    assert torch.equal(item["image"], clean[2]["image"])


def test_hflip_flips_image_and_foreground(mvtec: tuple[Path, Path]) -> None:
    plain = build_dataset(config(*mvtec), CLASS, "train", MEAN, STD, seed=0)
    flipped = build_dataset(config(*mvtec, hflip=1.0), CLASS, "train", MEAN, STD, seed=0)
    item = flipped[0]
    # Flip before the centre crop (as the reference): 43 -> 32 columns crops 6 left / 5 right,
    # so the flipped crop is the mirrored plain crop shifted by one column.
    assert torch.equal(item["image"][..., :-1], plain[0]["image"].flip(-1)[..., 1:])
    changed = (item["aug"] != item["image"]).any(dim=0)
    assert changed[:, :14].sum() == 0  # the foreground (left half) is now on the right
    assert changed.sum() > 0


@pytest.mark.parametrize("changes", [{"jpeg": 10}, {"blur": 3.0}])
def test_camera_augmentations_change_about_half_the_items_reproducibly(mvtec: tuple[Path, Path],
                                                                       changes: dict) -> None:
    """--jpeg 10 / --blur 3: an item is the plain one or, drawn per (seed, epoch, item), its JPEG round trip at a
    quality in 10..100 / its blur of sigma in 0..3 (blurred items change less from pixel to pixel than the plain
    ones); the same seed gives the same items, and about half of them are changed."""
    plain = build_dataset(config(*mvtec), CLASS, "train", MEAN, STD, seed=0)
    changed_set = build_dataset(config(*mvtec, **changes), CLASS, "train", MEAN, STD, seed=0)
    again = build_dataset(config(*mvtec, **changes), CLASS, "train", MEAN, STD, seed=0)
    changed = 0
    for epoch in range(4):
        for dataset in (plain, changed_set, again):
            dataset.set_epoch(epoch)
        for index in range(len(plain)):
            image, reference = changed_set[index]["image"], plain[index]["image"]
            assert torch.equal(image, again[index]["image"])
            if not torch.equal(image, reference):
                changed += 1
                if "blur" in changes:
                    assert image.diff(dim=-1).abs().mean() < reference.diff(dim=-1).abs().mean()
    total = 4 * len(plain)
    assert 0.2 * total <= changed <= 0.8 * total


def test_camera_augmentations_take_wide_grayscale_frames(mvtec: tuple[Path, Path]) -> None:
    """Grey 40x100 frames (a line camera's, not the demo's colour squares) with --jpeg 20 --blur 2: every item a
    finite (3, S, S) image, the same for the same seed, and (same centre crop) some differ from the plain items."""
    root, aug = mvtec
    rng = np.random.default_rng(5)
    for path in sorted((root / CLASS / "train" / "good").glob("*.png")):
        grey = PIL.Image.fromarray(rng.integers(0, 256, (40, 100), dtype=np.uint8), mode="L")
        grey.save(path)
    changes = {"fg": 0}
    plain = build_dataset(config(root, aug, **changes), CLASS, "train", MEAN, STD, seed=2)
    camera = build_dataset(config(root, aug, jpeg=20, blur=2.0, **changes), CLASS, "train", MEAN, STD, seed=2)
    again = build_dataset(config(root, aug, jpeg=20, blur=2.0, **changes), CLASS, "train", MEAN, STD, seed=2)
    differ = 0
    for index in range(len(camera)):
        image = camera[index]["image"]
        assert image.shape == (3, SIZE, SIZE) and torch.isfinite(image).all()
        assert torch.equal(image, again[index]["image"])
        differ += not torch.equal(image, plain[index]["image"])
    assert differ > 0


def test_augments_clean_images_flag(mvtec: tuple[Path, Path]) -> None:
    assert not config(*mvtec).augments_clean_images
    assert not config(*mvtec, augment=True).augments_clean_images  # unused by the reference
    for flag in ("rotate_degrees", "translate", "scale", "brightness", "contrast", "saturation",
                 "gray", "hflip", "vflip"):
        assert config(*mvtec, **{flag: 0.2 if flag != "rotate_degrees" else 10}).augments_clean_images
    assert config(*mvtec, train_crop="random").augments_clean_images  # (the clean features are not cached)
    assert config(*mvtec, jpeg=30).augments_clean_images
    assert config(*mvtec, blur=2.0).augments_clean_images
    assert not config(*mvtec, train_crop="centre").augments_clean_images


def _windows(item_image: torch.Tensor, scaled: np.ndarray) -> list[tuple[int, int]]:
    """Every (top, left) at which `item_image` (3,S,S) equals a window of `scaled` (3,H,W)."""
    size = item_image.shape[-1]
    found = []
    for top in range(scaled.shape[1] - size + 1):
        for left in range(scaled.shape[2] - size + 1):
            if np.array_equal(scaled[:, top:top + size, left:left + size], item_image.numpy()):
                found.append((top, left))
    return found


def test_random_train_crop_cuts_the_square_anywhere_in_the_scaled_image(tmp_path: Path) -> None:
    # A wide image (40x96, scaled to 36x86): the centre crop never shows its ends, random crops do.
    root, aug = make_mvtec(tmp_path / "mvtec"), make_textures(tmp_path / "dtd")
    wide = noise(np.random.default_rng(3), 40, 96)
    for path in (root / CLASS / "train" / "good").iterdir():
        save(path, wide)
    scaled = preprocess.normalize(preprocess.scale_short_side(PIL.Image.fromarray(wide), RESIZE), MEAN, STD)
    assert scaled.shape == (3, RESIZE, 86)
    centre = build_dataset(config(root, aug, fg=0), CLASS, "train", MEAN, STD, seed=0, las=False)
    assert _windows(centre[0]["image"], scaled) == [(2, 27)]  # torchvision's centre: round((86 - 32) / 2)
    ds = build_dataset(config(root, aug, fg=0, train_crop="random"), CLASS, "train", MEAN, STD, seed=0, las=False)
    places = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        for idx in range(len(ds)):
            item = ds[idx]
            assert item["image"].shape == (3, SIZE, SIZE)
            found = _windows(item["image"], scaled)
            assert len(found) == 1  # an exact window of the scaled image: no resampling, no padding
            places.add(found[0])
    lefts = [left for _, left in places]
    assert min(lefts) < 10 and max(lefts) > 44  # both ends of the 86 px width are learnt
    again = build_dataset(config(root, aug, fg=0, train_crop="random"), CLASS, "train", MEAN, STD, seed=0, las=False)
    again.set_epoch(11)
    assert torch.equal(again[3]["image"], item["image"])  # same seed, epoch and item: the same place


def test_random_train_crop_moves_the_foreground_with_the_image(mvtec: tuple[Path, Path]) -> None:
    ds = build_dataset(config(*mvtec, train_crop="random"), CLASS, "train", MEAN, STD, seed=0)
    lefts = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for idx in range(len(ds)):
            item, sample = ds[idx], ds.samples[idx]
            source = PIL.Image.open(sample.image_path).convert("RGB")
            scaled = preprocess.normalize(preprocess.scale_short_side(source, RESIZE), MEAN, STD)
            [(top, left)] = _windows(item["image"], scaled)
            fg = np.asarray(preprocess.scale_short_side(PIL.Image.open(sample.fg_path).convert("L"), RESIZE)) > 0
            changed = (item["aug"] != item["image"]).any(dim=0).numpy()
            assert changed.any() and not (changed & ~fg[top:top + SIZE, left:left + SIZE]).any()  # LAS inside fg
            lefts.add(left)
    assert len(lefts) > 3  # the crop (and with it the foreground) moved


def test_test_items_keep_the_centre_crop_with_random_train_crops(mvtec: tuple[Path, Path]) -> None:
    plain = build_dataset(config(*mvtec), CLASS, "test", MEAN, STD, seed=0)
    random_crops = build_dataset(config(*mvtec, train_crop="random"), CLASS, "test", MEAN, STD, seed=0)
    for idx in range(len(plain)):
        assert torch.equal(plain[idx]["image"], random_crops[idx]["image"])
        assert torch.equal(plain[idx]["mask_gt"], random_crops[idx]["mask_gt"])


def test_augmented_training_still_valid(mvtec: tuple[Path, Path]) -> None:
    cfg = config(*mvtec, rotate_degrees=30, translate=0.1, scale=0.1, brightness=0.3, contrast=0.3,
                 saturation=0.3, gray=0.5, vflip=0.5, rand_aug=0)
    ds = build_dataset(cfg, CLASS, "train", MEAN, STD, seed=0)
    a = ds[0]
    ds.set_epoch(1)
    b = ds[0]
    assert a["image"].shape == (3, SIZE, SIZE) and a["mask_s"].max() == 1
    assert not torch.equal(a["image"], b["image"])


def test_test_items(mvtec: tuple[Path, Path]) -> None:
    ds = build_dataset(config(*mvtec), CLASS, "test", MEAN, STD, seed=0)
    items = [ds[i] for i in range(len(ds))]
    assert [it["anomaly_type"] for it in items] == ["crack", "good"]  # sorted defect types
    assert [it["is_anomaly"] for it in items] == [1, 0]
    for it in items:
        assert set(it) == {"image", "mask_gt", "is_anomaly", "anomaly_type", "image_path", "idx"}
        assert it["mask_gt"].shape == (1, SIZE, SIZE) and it["mask_gt"].dtype == torch.float32
        assert set(it["mask_gt"].unique().tolist()) <= {0.0, 1.0}
    assert items[1]["mask_gt"].sum() == 0
    # Defect block rows 10:30, cols 14:34 of 40x48 -> x0.9 scale, crop offset (2, 5): rows 7-25, cols 8-26.
    gt = items[0]["mask_gt"][0]
    assert gt[16, 17] == 1 and gt[2, 2] == 0 and gt[30, 30] == 0
    assert 300 < gt.sum() < 360
    expected = (torch.tensor(GOOD_COLOUR) / 255.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(items[1]["image"][:, 5, 5], expected, atol=1e-5, rtol=0)


# ---- errors ----------------------------------------------------------------------------------


def test_missing_data_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError) as info:
        build_dataset(config(missing, tmp_path), CLASS, "train", MEAN, STD, seed=0)
    assert_one_line_error(info, missing)


def test_unknown_class_lists_found(mvtec: tuple[Path, Path]) -> None:
    root, aug = mvtec
    with pytest.raises(DatasetError, match="classes found in .*: bottle") as info:
        build_dataset(config(root, aug), "cable", "train", MEAN, STD, seed=0)
    assert_one_line_error(info, root / "cable")


def test_missing_train_good(mvtec: tuple[Path, Path]) -> None:
    root, aug = mvtec
    (root / "carpet" / "test").mkdir(parents=True)
    with pytest.raises(DatasetError) as info:
        build_dataset(config(root, aug), "carpet", "train", MEAN, STD, seed=0)
    assert_one_line_error(info, root / "carpet" / "train" / "good")


def test_empty_train_folder(mvtec: tuple[Path, Path]) -> None:
    root, aug = mvtec
    (root / "carpet" / "train" / "good").mkdir(parents=True)
    (root / "carpet" / "train" / "good" / "notes.txt").write_text("no images")
    with pytest.raises(DatasetError, match="no images") as info:
        build_dataset(config(root, aug), "carpet", "train", MEAN, STD, seed=0)
    assert_one_line_error(info, root / "carpet" / "train" / "good")


def test_missing_test_folder(mvtec: tuple[Path, Path]) -> None:
    root, aug = mvtec
    save(root / "carpet" / "train" / "good" / "000.png", noise(np.random.default_rng(0)))
    with pytest.raises(DatasetError) as info:
        build_dataset(config(root, aug), "carpet", "test", MEAN, STD, seed=0)
    assert_one_line_error(info, root / "carpet" / "test")


def test_missing_ground_truth(mvtec: tuple[Path, Path]) -> None:
    root, aug = mvtec
    (root / CLASS / "ground_truth" / "crack" / "000_mask.png").unlink()
    with pytest.raises(DatasetError) as info:
        build_dataset(config(root, aug), CLASS, "test", MEAN, STD, seed=0)
    assert_one_line_error(info, root / CLASS / "ground_truth" / "crack" / "000_mask.png")


@pytest.mark.parametrize("layout", ["missing", "empty", "nested"])
def test_missing_textures(mvtec: tuple[Path, Path], tmp_path: Path, layout: str) -> None:
    root, _ = mvtec
    aug = tmp_path / "textures"
    if layout == "empty":
        (aug / "banded").mkdir(parents=True)
    elif layout == "nested":  # DTD root given instead of DTD/images
        make_textures(aug / "images")
    with pytest.raises(DatasetError) as info:
        build_dataset(config(root, aug), CLASS, "train", MEAN, STD, seed=0)
    assert_one_line_error(info, aug)
    if layout == "nested":
        assert "did you mean" in str(info.value)
    build_dataset(config(root, aug), CLASS, "test", MEAN, STD, seed=0)  # textures are not needed to test
    build_dataset(config(root, aug), CLASS, "train", MEAN, STD, seed=0, las=False)


def test_missing_fg_masks(mvtec: tuple[Path, Path]) -> None:
    root, aug = mvtec
    (root / "fg_mask" / CLASS / "002.png").unlink()
    with pytest.raises(DatasetError, match="--fg 0") as info:
        build_dataset(config(root, aug), CLASS, "train", MEAN, STD, seed=0)
    assert_one_line_error(info, root / "fg_mask" / CLASS / "002.png")
    for path in (root / "fg_mask" / CLASS).iterdir():
        path.unlink()
    (root / "fg_mask" / CLASS).rmdir()
    with pytest.raises(DatasetError, match="--fg 0") as info:
        build_dataset(config(root, aug), CLASS, "train", MEAN, STD, seed=0)
    assert_one_line_error(info, root / "fg_mask" / CLASS)
    assert len(build_dataset(config(root, aug, fg=0), CLASS, "train", MEAN, STD, seed=0)) == 4


def test_corrupt_image_named_at_build(mvtec: tuple[Path, Path]) -> None:
    root, aug = mvtec
    bad = root / CLASS / "train" / "good" / "001.png"
    bad.write_bytes(b"\x00garbage, not a png")
    with pytest.raises(DatasetError, match="cannot read image") as info:
        build_dataset(config(root, aug), CLASS, "train", MEAN, STD, seed=0)
    assert_one_line_error(info, bad)


def test_truncated_image_named_when_loaded(mvtec: tuple[Path, Path]) -> None:
    root, aug = mvtec
    bad = root / CLASS / "train" / "good" / "003.png"
    bad.write_bytes(bad.read_bytes()[:200])  # valid header, data cut short
    ds = build_dataset(config(root, aug), CLASS, "train", MEAN, STD, seed=0)
    with pytest.raises(DatasetError, match="cannot read image") as info:
        ds[3]
    assert_one_line_error(info, bad)


def test_worker_error_summarised_to_one_line(tmp_path: Path) -> None:
    """torch re-raises worker errors with the worker traceback prepended; the helper recovers our line."""
    from torch._utils import ExceptionWrapper  # the wrapper DataLoader workers use

    bad = tmp_path / "bad.png"
    try:
        raise DatasetError(f"cannot read image {bad} (truncated); replace or remove the file")
    except DatasetError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(DatasetError) as info:
        wrapper.reraise()
    assert "\n" in str(info.value)
    message = loader_error_message(info.value)
    assert message == f"cannot read image {bad} (truncated); replace or remove the file"
    assert loader_error_message(DatasetError("plain one line")) == "plain one line"


@pytest.mark.parametrize(("changes", "match"), [
    ({"name": "mvtec2"}, ", ".join(DATASET_NAMES)),
    ({"imagesize": 30}, "not divisible by --downsampling 8"),
    ({"resize": 16}, "smaller than --imagesize"),
    ({"fg": 2}, "--fg must be 0"),
    ({"hflip": 1.5}, "--hflip"),
    ({"distribution": 7}, "--distribution"),
    ({"subdatasets": ()}, "--subdatasets"),
    ({"holdout": -0.1}, "--holdout"),
    ({"holdout": 0.6}, "--holdout"),
    ({"holdout": 1.0}, "--holdout"),
    ({"holdout": float("nan")}, "--holdout"),
    ({"train_crop": "left"}, "--train_crop must be one of centre, random"),
    ({"jpeg": 101}, "--jpeg must be a JPEG quality in [1, 100]"),
    ({"jpeg": -1}, "--jpeg"),
    ({"blur": 9.0}, "--blur must be a standard deviation in [0, 8]"),
])
def test_config_validation(tmp_path: Path, changes: dict, match: str) -> None:
    fields = {"name": "mvtec", "data_path": tmp_path, "aug_path": tmp_path, "subdatasets": (CLASS,)}
    fields.update(changes)
    with pytest.raises(DatasetError, match=re.escape(match)) as info:
        DatasetConfig(**fields)
    assert "\n" not in str(info.value)


def test_resize_below_imagesize_is_allowed_where_the_reference_overrides_it(tmp_path: Path) -> None:
    fields = {"name": "mvtec", "data_path": tmp_path, "aug_path": tmp_path, "resize": 256, "imagesize": 288}
    assert DatasetConfig(**fields, subdatasets=("wood", "toothbrush")).resize == 256  # trained at 329 (main)
    with pytest.raises(DatasetError, match=re.escape("--resize 256 is smaller than --imagesize 288 for bottle;")):
        DatasetConfig(**fields, subdatasets=("wood", "bottle"))
    with pytest.raises(DatasetError, match=re.escape("--imagesize 288; the centre crop")):
        DatasetConfig(**{**fields, "name": "visa"}, subdatasets=("wood",))  # the override is MVTec AD's only


def test_config_defaults_mirror_reference(tmp_path: Path) -> None:
    cfg = DatasetConfig("mvtec", str(tmp_path), str(tmp_path), ["bottle", "cable"])
    assert isinstance(cfg.data_path, Path) and cfg.subdatasets == ("bottle", "cable")
    assert (cfg.batch_size, cfg.resize, cfg.imagesize, cfg.downsampling) == (8, 288, 288, 8)
    assert (cfg.mean, cfg.std, cfg.fg, cfg.rand_aug, cfg.distribution) == (0.5, 0.1, 1, 1, 0)
    assert 1 <= cfg.num_workers <= 8
    assert cfg.feature_size == 36
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.resize = 1  # type: ignore[misc]


def test_bad_split(mvtec: tuple[Path, Path]) -> None:
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        build_dataset(config(*mvtec), CLASS, "val", MEAN, STD, seed=0)


# ---- held-out calibration images -------------------------------------------------------------------

@pytest.mark.parametrize(("n", "fraction", "expected"), [
    (6, 0.1, 0), (15, 0.1, 0), (16, 0.1, 8), (80, 0.1, 8), (100, 0.1, 10), (1000, 0.1, 100),
    (100, 0.0, 0), (100, 0.25, 25), (20, 0.5, 10),
])
def test_holdout_count(n: int, fraction: float, expected: int) -> None:
    assert holdout_count(n, fraction) == expected


@pytest.mark.parametrize(("n", "count"), [(16, 8), (80, 8), (100, 10), (37, 9)])
def test_holdout_indices_are_evenly_spaced_over_the_whole_list(n: int, count: int) -> None:
    indices = holdout_indices(n, count)
    assert len(indices) == count and indices == sorted(set(indices))
    assert indices[0] < n / count and indices[-1] >= n - n / count  # from the first run to the last
    gaps = np.diff(indices)
    assert gaps.max() - gaps.min() <= 1
    assert holdout_indices(80, 8) == [5, 15, 25, 35, 45, 55, 65, 75]


def test_split_holdout_sorts_by_path_and_keeps_the_order() -> None:
    samples = [Sample(Path(f"{i:03d}.png"), "good", 0) for i in reversed(range(16))]
    train, held = split_holdout(samples, 0.1)
    assert [s.image_path.name for s in held] == [f"{i:03d}.png" for i in (15, 13, 11, 9, 7, 5, 3, 1)]
    assert len(train) == 8 and not {s.image_path for s in train} & {s.image_path for s in held}
    assert [s.image_path for s in train] == [s.image_path for s in samples if s not in held]
    assert split_holdout(samples[:15], 0.1) == (samples[:15], [])


def test_holdout_warning_only_when_the_rule_cannot_be_honoured() -> None:
    message = holdout_warning(6, 0.1)
    assert message is not None and "\n" not in message
    assert "6 training images" in message and "optimistic" in message and "16" in message
    assert holdout_warning(16, 0.1) is None and holdout_warning(6, 0.0) is None


def test_heldout_images_are_not_training_items(tmp_path: Path) -> None:
    root, aug = make_mvtec(tmp_path / "mvtec", n_train=20), make_textures(tmp_path / "dtd")
    for las in (True, False):
        dataset = build_dataset(config(root, aug, holdout=0.1), CLASS, "train", MEAN, STD, seed=0, las=las)
        assert len(dataset) == 12 and len(dataset.heldout_paths) == 8
        assert not set(dataset.image_paths) & {str(p) for p in dataset.heldout_paths}
        assert {dataset[i]["image_path"] for i in range(len(dataset))} == set(dataset.image_paths)
    everything = build_dataset(config(root, aug, holdout=0.0), CLASS, "train", MEAN, STD, seed=0)
    assert len(everything) == 20 and everything.heldout_paths == []
    test = build_dataset(config(root, aug, holdout=0.1), CLASS, "test", MEAN, STD, seed=0, las=False)
    assert len(test) == 2 and test.heldout_paths == []  # the test split is never touched
    assert DatasetConfig("mvtec", root, aug, (CLASS,)).holdout == 0.0  # programmatic default: the reference's


def test_a_mask_of_another_size_than_its_image_is_an_error_naming_it(mvtec: tuple[Path, Path]) -> None:
    """Resized on its own it would move the defect's pixels; --resize_masks resizes it on purpose."""
    root, aug = mvtec
    mask_path = root / CLASS / "ground_truth" / "crack" / "000_mask.png"
    mask = np.asarray(PIL.Image.open(mask_path))
    PIL.Image.fromarray(mask).resize((mask.shape[1] * 2, mask.shape[0]), PIL.Image.NEAREST).save(mask_path)
    with pytest.raises(DatasetError, match="--resize_masks") as info:
        build_dataset(config(root, aug), CLASS, "test", MEAN, STD, seed=0)
    assert_one_line_error(info, mask_path)
    dataset = build_dataset(config(root, aug, resize_masks=True), CLASS, "test", MEAN, STD, seed=0)
    masks = [dataset[i]["mask_gt"] for i in range(len(dataset))]
    assert all(m.shape == (1, SIZE, SIZE) for m in masks) and max(float(m.sum()) for m in masks) > 0
