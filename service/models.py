"""The models the service can name and the ones it has loaded.

A model is a class directory under the results folder that holds a final checkpoint
(`inference_orchestrator.find_models`); its id is that directory's path relative to the results folder, with
POSIX separators (`models/backbone_0/mvtec_brick`). Names from a request are only ever looked up among the listed
ids, never joined to a path, so nothing outside the results folder can be named (directories reached through a
symbolic link that leads outside are not listed). Each loaded model has one `InferenceEngine` and a lock:
requests on one model take turns on it, requests on different models run side by side.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

import model as glass_model
import utils
from errors import UserError, first_line
from inference.engine import EngineConfig, FrameResult, InferenceEngine
from inference.inference_orchestrator import describe, find_models
from service.http_errors import ApiError

LOGGER = logging.getLogger(__name__)

RESULTS_CSV = "results.csv"
MODELS_FOLDER = "models"  # main.py writes <results_path>/models/... and <results_path>/results.csv


@dataclass(frozen=True)
class ModelEntry:
    """One model directory as /api/models lists it (method, size and thresholds from its checkpoint)."""

    model_id: str
    class_dir: Path
    class_name: str
    method: str
    backbone: str
    imagesize: int | None
    image_threshold: float | None
    pixel_threshold: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # the checkpoint could not be read

    def to_dict(self, loaded: bool) -> dict[str, Any]:
        """The JSON of /api/models (an unreadable checkpoint adds its one-line `error`)."""
        data: dict[str, Any] = {
            "model_id": self.model_id, "method": self.method, "class_name": self.class_name,
            "backbone": self.backbone, "imagesize": self.imagesize, "image_threshold": self.image_threshold,
            "pixel_threshold": self.pixel_threshold, "metrics": dict(self.metrics), "loaded": loaded,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass
class LoadedModel:
    """A model's engine and the lock its requests take turns on."""

    entry: ModelEntry
    engine: InferenceEngine
    lock: threading.Lock = field(default_factory=threading.Lock)

    def predict(self, image: np.ndarray) -> FrameResult:
        """The engine's verdict on one BGR image (one request at a time on this model)."""
        with self.lock:
            return self.engine.predict([image])[0]


def check_model_id(model_id: str) -> None:
    """400 for an id that could only name something outside the results folder ('..', absolute, drive, NUL)."""
    parts = model_id.split("/")
    if (not model_id or "\x00" in model_id or "\\" in model_id or ":" in model_id or model_id.startswith("/")
            or any(part in ("", ".", "..") for part in parts)):
        raise ApiError(400, f"model_id {model_id!r}: give a model folder relative to the results folder, without "
                            "'..' (GET /api/models lists the ids)")


def read_metrics(class_dir: Path, root: Path, method: str) -> dict[str, float]:
    """The metrics of this class and method from the results.csv of the run that trained it (the folder above
    its `models/`, inside the results folder); {} when there is none or the table is unreadable."""
    table = next((folder.parent / RESULTS_CSV for folder in class_dir.parents
                  if folder.name == MODELS_FOLDER and folder.parent.is_relative_to(root)), None)
    if table is None:
        return {}
    try:
        rows = utils.read_results_csv(table)
    except (UserError, OSError) as err:
        LOGGER.warning("%s: not read (%s)", table, first_line(err))
        return {}
    for row in rows:
        if row["class"] == class_dir.name and row["method"] == method:
            return {name: float(row[name]) for name in utils.METRIC_NAMES}
    return {}


class ModelRegistry:
    """Lists the models under the results folder, loads them (one engine each) and hands them to requests.

    The listing is scanned again on every /api/models and whenever a name is not found (models trained while
    the service runs appear); checkpoint descriptions are cached by file and modification time. One lock guards
    the listing and the loaded engines, one the scans (and the description cache), one the loading: one scan and
    one model load at a time.
    """

    def __init__(self, results_path: Path, device: str, backend: str) -> None:
        self.root = Path(results_path)
        self.device = device
        self.backend = backend
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._entries: dict[str, ModelEntry] = {}
        self._described: dict[tuple[Path, int], dict[str, Any]] = {}
        self._loaded: dict[str, LoadedModel] = {}

    def scan(self) -> list[ModelEntry]:
        """Every model directory under the results folder, sorted by id (the listing is refreshed)."""
        root = self.root.resolve()
        entries: dict[str, ModelEntry] = {}
        with self._scan_lock:
            for class_dir in find_models(self.root):
                if not class_dir.resolve().is_relative_to(root):
                    LOGGER.warning("%s: leads outside the results folder; not listed", class_dir)
                    continue
                model_id = PurePosixPath(*class_dir.relative_to(self.root).parts).as_posix()
                entries[model_id] = self._entry(model_id, class_dir)
        with self._lock:
            self._entries = entries
        return [entries[key] for key in sorted(entries)]

    def _entry(self, model_id: str, class_dir: Path) -> ModelEntry:
        """A directory's entry from its checkpoint (described once per checkpoint file and modification; called
        under the scan lock)."""
        checkpoint = glass_model.final_checkpoint_path(class_dir)
        key = (checkpoint, checkpoint.stat().st_mtime_ns)
        row = self._described.get(key)
        if row is None:
            row = describe(class_dir)
            self._described[key] = row
        method = row.get("method", "?")
        imagesize = row["imagesize"] if isinstance(row["imagesize"], int) else None
        return ModelEntry(model_id, class_dir, class_dir.name, method, row["backbone"], imagesize,
                          row.get("image_threshold"), row.get("pixel_threshold"),
                          read_metrics(class_dir, self.root, method) if "error" not in row else {},
                          row.get("error"))

    def find(self, model_id: str) -> ModelEntry:
        """The entry of a listed id: 400 for an id that points outside, 404 for one not listed."""
        check_model_id(model_id)
        with self._lock:
            entry = self._entries.get(model_id)
        if entry is None:
            entry = next((e for e in self.scan() if e.model_id == model_id), None)
        if entry is None:
            raise ApiError(404, f"model_id {model_id!r}: no such model under the results folder; GET /api/models "
                                "lists the ids")
        return entry

    def find_class(self, class_name: str) -> ModelEntry:
        """The one entry of a class name: 404 when none, 400 listing the ids when several."""
        matches = [entry for entry in self.scan() if entry.class_name == class_name]
        if not matches:
            raise ApiError(404, f"class_name {class_name!r}: no model of that class under the results folder; "
                                "GET /api/models lists them")
        if len(matches) > 1:
            ids = ", ".join(entry.model_id for entry in matches)
            raise ApiError(400, f"class_name {class_name!r}: {len(matches)} models ({ids}); load one by model_id")
        return matches[0]

    def load(self, entry: ModelEntry) -> LoadedModel:
        """The entry's loaded model, loading it now if needed (400 when its checkpoint cannot be loaded)."""
        with self._load_lock:
            with self._lock:
                loaded = self._loaded.get(entry.model_id)
            if loaded is not None:
                return loaded
            config = EngineConfig(model_path=str(entry.class_dir), device=self.device, backend=self.backend)
            try:
                engine = InferenceEngine.from_config(config)
            except UserError as err:
                raise ApiError(400, f"model_id {entry.model_id!r}: cannot be loaded ({first_line(err)})") from None
            LOGGER.info("loaded %s (%s backend, threshold %.4f)", entry.model_id, engine.backend_name,
                        engine.threshold)
            loaded = LoadedModel(entry, engine)
            with self._lock:
                self._loaded[entry.model_id] = loaded
            return loaded

    def loaded_ids(self) -> list[str]:
        """Ids of the loaded models, sorted."""
        with self._lock:
            return sorted(self._loaded)

    def is_loaded(self, model_id: str) -> bool:
        """True when the model is loaded."""
        with self._lock:
            return model_id in self._loaded

    def model_for(self, model_id: str | None) -> LoadedModel:
        """The model a request names (loaded now if it is not yet), or without a name the only loaded one: 409
        when none is loaded, 400 when several are."""
        if model_id:
            return self.load(self.find(model_id))
        with self._lock:
            loaded = list(self._loaded.values())
        if not loaded:
            raise ApiError(409, "no model loaded; POST /api/load_model first or name one with model_id")
        if len(loaded) > 1:
            ids = ", ".join(sorted(m.entry.model_id for m in loaded))
            raise ApiError(400, f"{len(loaded)} models loaded ({ids}); name one with model_id")
        return loaded[0]
