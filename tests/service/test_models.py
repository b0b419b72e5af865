"""The model registry: what can be named (nothing outside the results folder), metrics, loading, the default
model of a request."""
from __future__ import annotations

import shutil

import pytest

from service.http_errors import ApiError
from service.models import ModelRegistry, check_model_id, read_metrics


@pytest.fixture
def two_toys(service_results, service_model_id, tmp_path):
    """A results folder with the tiny model twice (models/ and run2/models/), a broken checkpoint, and a link
    that leads out of the folder."""
    root = tmp_path / "results"
    shutil.copytree(service_results, root)
    shutil.copytree(root / service_model_id, root / "run2" / service_model_id)
    broken = root / "models" / "backbone_1" / "mvtec_broken"
    broken.mkdir(parents=True)
    (broken / "ckpt_best_3.pth").write_bytes(b"not a checkpoint")
    outside = tmp_path / "outside" / "mvtec_secret"
    shutil.copytree(root / service_model_id, outside)
    (root / "models" / "backbone_2").mkdir()
    (root / "models" / "backbone_2" / "mvtec_secret").symlink_to(outside, target_is_directory=True)
    return root


def error_of(call) -> tuple[int, str]:
    """(status, message) of the ApiError a call raises."""
    with pytest.raises(ApiError) as error:
        call()
    return error.value.status, str(error.value)


@pytest.mark.parametrize("model_id", ["../x", "models/../../etc", "/etc/passwd", "C:/x", "a\\b", "a//b", "./a",
                                      "a/", "", "a\x00b"])
def test_ids_that_could_leave_the_results_folder_are_400(model_id):
    assert error_of(lambda: check_model_id(model_id))[0] == 400


def test_listing_ids_metrics_and_what_is_left_out(two_toys, service_model_id):
    registry = ModelRegistry(two_toys, "cpu", "torch")
    entries = {entry.model_id: entry for entry in registry.scan()}
    assert sorted(entries) == ["models/backbone_0/mvtec_toy", "models/backbone_1/mvtec_broken",
                               "run2/models/backbone_0/mvtec_toy"]  # the link out of the folder is not listed
    assert entries[service_model_id].metrics and entries[service_model_id].error is None
    assert entries["run2/models/backbone_0/mvtec_toy"].metrics == {}  # run2/ has no results.csv
    broken = entries["models/backbone_1/mvtec_broken"]
    assert broken.method == "?" and "not a readable checkpoint" in broken.error
    assert broken.to_dict(False)["error"] == broken.error
    assert error_of(lambda: registry.find("models/backbone_2/mvtec_secret"))[0] == 404
    status, message = error_of(lambda: registry.find_class("mvtec_toy"))
    assert status == 400 and "models/backbone_0/mvtec_toy" in message and "run2/models/backbone_0/mvtec_toy" in message
    assert error_of(lambda: registry.load(broken)) == (
        400, f"model_id 'models/backbone_1/mvtec_broken': cannot be loaded ({broken.error})")


def test_metrics_of_a_missing_or_unreadable_table_are_empty(two_toys, service_model_id):
    class_dir = two_toys / service_model_id
    assert read_metrics(class_dir, two_toys, "glass")["image_auroc"] >= 0
    assert read_metrics(class_dir, two_toys, "patchcore") == {}  # no row of that method
    (two_toys / "results.csv").write_text("not,a,table\n")
    assert read_metrics(class_dir, two_toys, "glass") == {}


def test_the_request_default_model_and_loading_on_demand(two_toys, service_model_id):
    registry = ModelRegistry(two_toys, "cpu", "torch")
    assert error_of(lambda: registry.model_for(None))[0] == 409
    first = registry.model_for(service_model_id)  # named: loaded on demand
    assert registry.loaded_ids() == [service_model_id] and registry.model_for(None) is first
    assert registry.load(registry.find(service_model_id)) is first  # loaded once
    registry.model_for("run2/models/backbone_0/mvtec_toy")
    status, message = error_of(lambda: registry.model_for(None))
    assert status == 400 and "2 models loaded" in message


def test_a_model_trained_after_the_start_is_found(two_toys, service_model_id):
    registry = ModelRegistry(two_toys, "cpu", "torch")
    registry.scan()
    shutil.copytree(two_toys / service_model_id, two_toys / "models" / "backbone_0" / "mvtec_new")
    assert registry.find("models/backbone_0/mvtec_new").class_name == "mvtec_new"
