"""benchmarks/mask_fringe.py: the faint share of painted masks, rebuilt from a conveyor sidecar."""
from __future__ import annotations

import json

import pytest

from benchmarks import mask_fringe
from preprocessing import create_conveyor_video as conveyor


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    """A small gravel conveyor with a stain and a hole, and its sidecar."""
    folder = tmp_path_factory.mktemp("fringe")
    cfg = conveyor.ConveyorConfig(texture="gravel", size=96, speed=8, defects=2, seed=3,
                                  defect_types=("stain", "hole"))
    data = conveyor.create_conveyor_video(folder / "belt.mp4", cfg)
    return folder / "belt.mp4.json", cfg, data


def test_the_sidecar_gives_back_the_conveyor_settings(sidecar):
    path, cfg, _ = sidecar
    assert mask_fringe.config_of(path) == cfg


def test_rows_cover_every_painted_defect_with_shares_in_order(sidecar):
    path, _, data = sidecar
    rows = mask_fringe.fringe_rows(mask_fringe.config_of(path))
    assert [(row["id"], row["type"], row["pixels"]) for row in rows] == [
        (d["defect_id"], d["defect_type"], d["area_pixels"]) for d in data["defects"]]
    for row in rows:
        assert 0.0 <= row["below_10"] <= row["below_20"] <= 1.0
        assert row["surface_std"] > 5.0  # gravel is busy


def test_cli_prints_a_row_per_defect_and_refuses_a_missing_sidecar(sidecar, tmp_path, capsys):
    path, _, data = sidecar
    assert mask_fringe.main([str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 + len(data["defects"]) and lines[2].startswith("| 1 | stain |")
    with pytest.raises(SystemExit) as code:
        mask_fringe.main([str(tmp_path / "nothing.json")])
    assert code.value.code == 2 and "nothing.json" in capsys.readouterr().err
    json.loads(path.read_text())  # the sidecar is left as it was
