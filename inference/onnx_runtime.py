"""The ONNX Runtime backend of the inference engine: an exported GLASS model (onnx_export) run in
onnxruntime on CPU or CUDA, behind the engine's Backend protocol (inference.backends).

Fixed-batch files are fed transparently: `OnnxBackend.patch_scores` splits a larger batch into
the file's batch size and zero-pads the last chunk (padding rows are dropped from the result).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from errors import first_line
from inference.onnx_export import IMAGE_OUTPUT_NAME, INPUT_NAME, OUTPUT_NAME, OnnxModelError, read_model_description

LOGGER = logging.getLogger(__name__)
# A PatchCore export compares every patch with the whole memory bank in one matrix: ONNX Runtime holds
# patches x bank distances (float32, about three copies: product, norms added, minimum) at once. A batch
# is split into runs that stay within this budget (the PyTorch backend scores in row blocks instead).
DISTANCE_BUDGET_BYTES = 1 << 30
DISTANCE_COPIES = 3

PROVIDERS = ("cpu", "cuda")


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads counted once)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            cores.add((package, (topology / "core_id").read_text().strip()))
        except OSError:  # no sysfs topology (containers, other OSes): count logical CPUs
            return max(1, len(cpus))
    return max(1, len(cores))


def has_cuda() -> bool:
    """True when this onnxruntime installation can run on CUDA (onnxruntime-gpu)."""
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _providers(provider: str) -> list[str]:
    """onnxruntime provider list for 'cpu' or 'cuda' (checked against this installation)."""
    if provider not in PROVIDERS:
        raise OnnxModelError(f"--provider {provider}: unknown provider; use cpu or cuda")
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if not has_cuda():
        raise OnnxModelError("--provider cuda: this onnxruntime has no CUDA support (pip install onnxruntime-gpu); "
                             "use --provider cpu")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def open_session(onnx_path: Path, provider: str = "cpu", threads: int | None = None) -> Any:
    """An optimised onnxruntime InferenceSession; a missing or corrupt file -> OnnxModelError."""
    providers = _providers(provider)
    if threads is not None and threads < 1:
        raise OnnxModelError(f"threads {threads}: must be at least 1")
    if not onnx_path.is_file():
        raise OnnxModelError(f"{onnx_path}: ONNX model not found; export it with python onnx/pth2onnx.py "
                             "--model_path ... --class_name ...")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    load_errors = (ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.Fail, ort_errors.NoModel,
                   ort_errors.NotImplemented, ort_errors.RuntimeException, ort_errors.InvalidArgument)
    try:
        return ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
    except load_errors as err:
        reason = first_line(err)[:160]
        raise OnnxModelError(f"{onnx_path}: not a loadable ONNX model ({reason}); export it again with "
                             "python onnx/pth2onnx.py") from None


class OnnxBackend:
    """An exported class model (any method) in onnxruntime; implements the engine's Backend protocol."""

    name = "onnx"

    def __init__(self, onnx_path: str | os.PathLike, provider: str = "cpu", threads: int | None = None) -> None:
        self.path = Path(onnx_path)
        self.info, self.description = read_model_description(self.path)
        self.session = open_session(self.path, provider, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        names = [output.name for output in outputs]
        if (len(inputs) != 1 or inputs[0].name != INPUT_NAME or names[0] != OUTPUT_NAME
                or names[1:] not in ([], [IMAGE_OUTPUT_NAME])):
            raise OnnxModelError(f"{self.path}: inputs/outputs are not '{INPUT_NAME}' -> '{OUTPUT_NAME}' "
                                 "(not a GLASS export); export it with python onnx/pth2onnx.py")
        shape = inputs[0].shape
        if len(shape) != 4 or shape[1] != 3 or isinstance(shape[2], int) or isinstance(shape[3], int):
            raise OnnxModelError(f"{self.path}: input shape {shape} is not (B, 3, height, width) with dynamic "
                                 "height and width; export the model again with python onnx/pth2onnx.py")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.outputs = names  # patch scores, and the image-score grid where it differs (PatchCore)
        self.bank_rows = int(self.description.get("memory_bank_rows") or 0)  # PatchCore's bank; 0: none
        self._warned_sizes: set[tuple[int, int]] = set()
        LOGGER.info("ONNX model %s on %s (batch %s, %s form)", self.path, self.session.get_providers()[0],
                    self.fixed_batch or "dynamic", self.description.get("form"))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """One session run: the outputs stacked (B, 1 or 2, h, w)."""
        return np.stack(self.session.run(self.outputs, {INPUT_NAME: batch}), axis=1)

    def patch_scores(self, batch: np.ndarray) -> np.ndarray:
        """Patch scores (B,h,w) of a batch (see score_grids)."""
        return self.score_grids(batch)[0]

    def score_grids(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(patch scores, image-score grid), each (B,h,w), for a normalised float32 batch (B,3,H,W), H and W
        multiples of the model's input multiple; any B, also for fixed-batch files."""
        multiple = self.info.pad_to
        if batch.ndim != 4 or batch.shape[1] != 3 or batch.shape[2] % multiple or batch.shape[3] % multiple:
            raise OnnxModelError(f"input batch of shape {batch.shape}: this model takes (B, 3, H, W) with H and W "
                                 f"multiples of {multiple}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        count = len(batch)
        if count == 0:
            empty = np.empty((0, batch.shape[2] // self.info.stride, batch.shape[3] // self.info.stride), np.float32)
            return empty, empty
        step = self.fixed_batch or self.images_per_run(batch.shape[2], batch.shape[3]) or count
        if count == step:
            return _split(self._run(batch))
        chunks = []
        for start in range(0, count, step):
            chunk = batch[start:start + step]
            if self.fixed_batch is not None and len(chunk) < step:
                chunk = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)])
            chunks.append(self._run(chunk))
        return _split(np.concatenate(chunks)[:count])

    def images_per_run(self, height: int, width: int) -> int | None:
        """How many height x width inputs one run may score: PatchCore's patch x bank distances within
        DISTANCE_BUDGET_BYTES (at least one; warns once per size beyond it); None: no limit."""
        if not self.bank_rows:
            return None
        patches = (height // self.info.stride) * (width // self.info.stride)
        per_image = patches * self.bank_rows * 4 * DISTANCE_COPIES
        if per_image > DISTANCE_BUDGET_BYTES and (height, width) not in self._warned_sizes:
            self._warned_sizes.add((height, width))
            LOGGER.warning("a %dx%d input compares %d patches with %d memory-bank patches: about %.1f GB at once "
                           "in ONNX Runtime; if memory runs out, use --backend torch (it scores in blocks) or a "
                           "model with a smaller --coreset", width, height, patches, self.bank_rows, per_image / 1e9)
        return max(1, DISTANCE_BUDGET_BYTES // per_image)


def _split(stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 1 or 2, h, w) outputs -> (patch scores, image-score grid; the patch scores when one output)."""
    patch = stacked[:, 0]
    return patch, patch if stacked.shape[1] == 1 else stacked[:, 1]
