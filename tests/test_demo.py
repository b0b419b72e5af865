"""The offline demo end to end (slow: about 11 minutes on 2 cores; run with `pytest -m slow`)."""
import csv
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


CLASSES = ("brick", "gravel", "grass")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Runs shell/run-demo.sh into a fresh folder once; (results folder, completed process)."""
    root = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "PYTHON": sys.executable, "DEMO_ROOT": str(root / "demo_data"),
           "RESULTS": str(root / "results")}
    proc = subprocess.run(["bash", "shell/run-demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "results", proc


@pytest.mark.slow
def test_run_demo_reaches_image_auroc_090_on_every_class(demo):
    results, proc = demo
    with open(results / "results.csv", newline="") as handle:
        rows = {row["class"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"mvtec_brick", "mvtec_gravel", "mvtec_grass", "Mean"}
    for name in ("mvtec_brick", "mvtec_gravel", "mvtec_grass"):
        assert float(rows[name]["image_auroc"]) >= 0.90, rows[name]
        assert rows[name]["selection"] == "last"
    assert "image_auroc" in proc.stdout  # the table is printed


@pytest.mark.slow
@pytest.mark.parametrize("texture", CLASSES)
def test_orchestrator_picks_the_product_of_a_conveyor_video_and_tracks_its_defects(demo, texture, tmp_path,
                                                                                  monkeypatch):
    from inference import inference_orchestrator
    from preprocessing.create_conveyor_video import ConveyorConfig, create_conveyor_video

    results, _ = demo
    video = tmp_path / f"conveyor_{texture}.mp4"
    truth = create_conveyor_video(video, ConveyorConfig(texture=texture, size=256, speed=4, defects=4))
    monkeypatch.chdir(tmp_path)
    assert inference_orchestrator.cli(["--video_path", str(video), "--results_path", str(results),
                                       "--device", "cpu", "--pixel_size", "0.1"]) == 0
    selection = json.loads(next(tmp_path.rglob("model_selection.json")).read_text())
    assert selection["selected"]["class_name"] == f"mvtec_{texture}"
    report = json.loads(next(tmp_path.rglob("tracking_report.json")).read_text())
    assert report["totals"]["mean_motion_px_per_frame"][0] == pytest.approx(-4.0, abs=0.5)
    # every painted defect is followed by a track over most of its passage through the view
    for defect_id in range(1, 5):
        shown = [r["index"] for r in truth["frames"] if any(d["defect_id"] == defect_id for d in r["defects"])]
        overlap = max(min(t["last_frame"], shown[-1]) - max(t["first_frame"], shown[0]) + 1
                      for t in report["tracks"])
        assert overlap >= 0.5 * len(shown), (defect_id, report["tracks"])
