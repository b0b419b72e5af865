"""VisA layout: <root>/split_csv/1cls.csv with columns object, split, label, image, mask.

Image and mask paths in the CSV are relative to <root>; labels are 'normal' or 'anomaly';
masks are non-zero where defective. Foreground masks (optional) follow the reference:
<root>/fg_mask/<class>/<image file name>.
"""

from __future__ import annotations

import csv
from pathlib import Path

from datasets.base import GOOD, DatasetError, Sample
from errors import first_line

SPLIT_CSV = Path("split_csv") / "1cls.csv"
CSV_COLUMNS = ("object", "split", "label", "image", "mask")
NORMAL, ANOMALY = "normal", "anomaly"


def read_split_csv(root: Path) -> list[dict[str, str]]:
    """Rows of <root>/split_csv/1cls.csv; DatasetError if it is missing or lacks a column."""
    path = root / SPLIT_CSV
    if not path.is_file():
        raise DatasetError(f"VisA split file {path} does not exist; create {SPLIT_CSV} "
                           f"(columns {','.join(CSV_COLUMNS)}) under DATA_PATH")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"VisA split file {path} lacks column(s) {', '.join(missing)}; "
                                   f"the header must be {','.join(CSV_COLUMNS)}")
            return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read VisA split file {path} ({first_line(exc)}); fix or regenerate it") from exc


def row_sample(root: Path, row: dict[str, str], csv_path: Path) -> Sample:
    """Sample of one CSV row (anomalies need a mask path)."""
    label = row["label"]
    if label not in (NORMAL, ANOMALY):
        raise DatasetError(f"VisA split file {csv_path}: label '{label}' for {row['image']} is not "
                           f"'{NORMAL}' or '{ANOMALY}'; fix the row")
    if label == NORMAL:
        return Sample(root / row["image"], GOOD, 0)
    if not row["mask"]:
        raise DatasetError(f"VisA split file {csv_path}: anomaly {row['image']} has no mask path; fill its mask column")
    mask = root / row["mask"]
    if not mask.is_file():
        raise DatasetError(f"ground-truth mask {mask} does not exist (listed in {csv_path}); add it or fix the row")
    return Sample(root / row["image"], ANOMALY, 1, mask)


def visa_samples(root: Path, classname: str, split: str) -> list[Sample]:
    """Samples of one class and split (train: normal only; test: anomalies then normals, CSV order)."""
    rows = read_split_csv(root)
    csv_path = root / SPLIT_CSV
    objects = sorted({row["object"] for row in rows})
    if classname not in objects:
        raise DatasetError(f"class '{classname}' not found in {csv_path} (classes found: "
                           f"{', '.join(objects) or 'none'}); check --subdatasets/-d")
    rows = [row for row in rows if row["object"] == classname and row["split"] == split]
    if split == "train":
        rows = [row for row in rows if row["label"] == NORMAL]
        if not rows:
            raise DatasetError(f"no training images for class '{classname}' in {csv_path} "
                               f"(rows with split=train, label=normal); fix the split file")
    else:
        rows = [row for row in rows if row["label"] != NORMAL] + [row for row in rows if row["label"] == NORMAL]
        if not rows:
            raise DatasetError(f"no test images for class '{classname}' in {csv_path} (rows with split=test); "
                               f"fix the split file")
    return [row_sample(root, row, csv_path) for row in rows]
