"""Load test of the inspection service on loopback: N concurrent clients, a fixed number of /api/test_image requests.

    python benchmarks/bench_service.py --results_path results/demo --model_id models/backbone_0/mvtec_brick \
        --images data/mvtec/brick/test --clients 1 4 8 --requests 200

Starts `python -m service` (uvicorn) in a subprocess on a free 127.0.0.1 port, loads the model, sends a few
warm-up requests, then for each client count runs that many threads (one httpx client each) that share the
fixed number of requests between them, each request one image of --images in turn (or a synthetic texture
without --images) with its full answer (score, regions, the three base64 PNGs). Every round is bounded by
--requests and by --time_limit seconds (requests not sent by then are left out and said so). Prints one row per
client count: requests done, errors (any answer but 200, or a transport error; 0 expected), wall time,
requests/s, p50 and p95 latency; --out also writes the rows as JSON. Exit code 1 when any request failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np

import errors
import paths
import utils
from service import local

START_TIMEOUT_S = 180.0
WARMUP_REQUESTS = 3


class BenchError(errors.UserError):
    """A benchmark setting that cannot work (one line naming the flag and the fix)."""


@dataclass(frozen=True)
class RoundResult:
    """One client count's round."""

    clients: int
    requests: int  # answered (200 or not)
    errors: int
    wall_s: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    left_out: int  # not sent before --time_limit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_path", required=True, help="results folder the service serves")
    parser.add_argument("--model_id", required=True, help="the model's id (GET /api/models), e.g. "
                                                          "models/backbone_0/mvtec_brick")
    parser.add_argument("--images", default=None, help="folder of images sent in turn (default: one synthetic "
                                                       "texture of --image_size)")
    parser.add_argument("--image_size", type=utils.positive_int, default=256)
    parser.add_argument("--clients", nargs="+", type=utils.positive_int, default=[1, 4, 8])
    parser.add_argument("--requests", type=utils.positive_int, default=200, help="requests per client count")
    parser.add_argument("--time_limit", type=utils.positive_float, default=300.0, help="seconds per round at most")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--out", default=None, help="JSON file for the rows")
    return parser.parse_args(argv)


def load_images(folder: str | None, size: int) -> list[tuple[str, bytes]]:
    """(name, PNG/JPEG bytes) of the images of a folder (recursively), or one synthetic texture."""
    if folder is None:
        rng = np.random.default_rng(0)
        texture = cv2.resize(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8), (size, size),
                             interpolation=cv2.INTER_CUBIC)
        return [("texture.png", cv2.imencode(".png", texture)[1].tobytes())]
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in paths.IMAGE_SUFFIXES) if root.is_dir() else []
    if not files:
        raise BenchError(f"--images {folder}: no image files found; point it to a folder of images")
    return [(p.relative_to(root).as_posix(), p.read_bytes()) for p in files]


def start_service(args: argparse.Namespace, scratch: Path) -> tuple[subprocess.Popen, str]:
    """`python -m service` on a free loopback port (service.local); the process and its URL once it answers."""
    env = dict(os.environ)
    env.pop("GLASS_SERVICE_TOKEN", None)
    return local.start(["--results_path", args.results_path, "--device", args.device, "--backend", args.backend,
                        "--jobs_dir", str(scratch / "jobs")], scratch / "service.log", env, START_TIMEOUT_S)


def run_round(url: str, model_id: str, images: list[tuple[str, bytes]], clients: int, requests: int,
              time_limit: float) -> RoundResult:
    """`clients` threads share `requests` test_image requests (stopping at time_limit); latencies and errors."""
    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    failures = [0]
    deadline = time.monotonic() + time_limit

    def take() -> int | None:
        with lock:
            if next_index[0] >= requests or time.monotonic() > deadline:
                return None
            next_index[0] += 1
            return next_index[0] - 1

    def client() -> None:
        with httpx.Client(base_url=url, timeout=max(time_limit, 30.0)) as http:
            while (index := take()) is not None:
                name, data = images[index % len(images)]
                tick = time.perf_counter()
                try:
                    ok = http.post("/api/test_image", files={"file": (name, data)},
                                   data={"model_id": model_id}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - tick
                with lock:
                    latencies.append(elapsed)
                    failures[0] += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    done = len(latencies)
    p50, p95 = (np.percentile(latencies, [50, 95]) * 1000.0).tolist() if done else (float("nan"),) * 2
    return RoundResult(clients, done, failures[0], wall, done / wall if wall > 0 else 0.0, p50, p95,
                       requests - done)


def table(rows: list[RoundResult]) -> str:
    """The rows as a Markdown table."""
    lines = ["| clients | requests | errors | wall s | requests/s | p50 ms | p95 ms |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.clients} | {row.requests} | {row.errors} | {row.wall_s:.1f} | "
                     f"{row.requests_per_s:.2f} | {row.p50_ms:.0f} | {row.p95_ms:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Starts the service, runs every client count, prints the table; 1 when any request failed."""
    args = parse_args(argv)
    if not Path(args.results_path).is_dir():
        raise BenchError(f"--results_path {args.results_path}: folder not found")
    images = load_images(args.images, args.image_size)
    with tempfile.TemporaryDirectory(prefix="bench_service_") as scratch:
        process, url = start_service(args, Path(scratch))
        try:
            with httpx.Client(base_url=url, timeout=300.0) as http:
                loaded = http.post("/api/load_model", json={"model_id": args.model_id})
                if loaded.status_code != 200:
                    raise BenchError(f"--model_id {args.model_id}: {loaded.json().get('detail')}")
                for name, data in images[:1] * WARMUP_REQUESTS:
                    http.post("/api/test_image", files={"file": (name, data)})
                status = http.get("/api/status").json()
            rows = [run_round(url, args.model_id, images, clients, args.requests, args.time_limit)
                    for clients in args.clients]
        finally:
            local.stop(process)
    print(f"service {status['version']} on {status['device']} (backend {status['backend']}), model {args.model_id}, "
          f"{len(images)} image(s), {args.requests} requests per row, at most {args.time_limit:g} s per row")
    print(table(rows))
    left_out = sum(row.left_out for row in rows)
    if left_out:
        print(f"{left_out} request(s) not sent within --time_limit")
    if args.out:
        utils.atomic_write_text(args.out, json.dumps([asdict(row) for row in rows], indent=2) + "\n")
    return 1 if any(row.errors for row in rows) else 0


if __name__ == "__main__":
    sys.exit(errors.run_script(main))
