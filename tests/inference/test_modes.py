"""inference.modes: every video script is its mode's command from the registry."""
from __future__ import annotations

import pytest

from inference import modes, run_video_inference
from inference import video_inference, video_inference_clean, video_inference_sidebyside, video_inference_with_size


@pytest.mark.parametrize("script, mode, own_flags", [
    (video_inference, "basic", []),
    (video_inference_sidebyside, "sidebyside", []),
    (video_inference_clean, "clean", ["intensity"]),
    (video_inference_with_size, "size", ["pixel_size", "physical_unit", "min_defect_area", "pixel_threshold"]),
])
def test_every_script_is_its_modes_command_from_the_registry(script, mode, own_flags):
    shared_flags = ["model_path", "class_name", "device", "backend", "batch_size", "threshold", "roi", "onnx_path",
                    "video_path", "output_path", "display", "max_frames"]
    assert script.main.name == modes.MODES[mode].command_name == script.__name__.rsplit(".", 1)[1]
    assert [p.name for p in script.main.params] == shared_flags + own_flags
    assert [p.name for p in modes.own_parameters(mode)] == own_flags
    wrapper_flags = [p.name for p in run_video_inference.main.params]
    assert all(flag in wrapper_flags for flag in shared_flags[:8] + own_flags)  # the wrapper takes them, typed
    with pytest.raises(ValueError, match="either a renderer or a run"):
        modes.Mode("nothing", "nothing", "draws nothing")
