"""`python -m service`: serves the REST API and the web page with uvicorn.

    python -m service --results_path results --host 127.0.0.1 --port 8000 [--token T] [--max_upload_mb 20]
        [--max_pixels 40000000] [--device auto] [--backend auto] [--jobs_dir output/service_jobs]

A bad flag (missing results folder, a non-loopback --host without a token, ...) is one line on stderr,
`error: ...`, and exit code 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from errors import run_script
from service.config import (DEFAULT_HOST, DEFAULT_JOBS_DIR, DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT,
                            DEFAULT_RESULTS_PATH, TOKEN_ENV, ServiceConfig, token_from)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    args = argparse.ArgumentParser(prog="python -m service", description="Inspection service: REST API (docs at "
                                   "/docs) and web page over the models of a results folder.")
    args.add_argument("--results_path", default=DEFAULT_RESULTS_PATH,
                      help="Folder of trained models (every backbone_*/<class>/ckpt_best_*.pth below it is served). "
                           "Default: %(default)s")
    args.add_argument("--host", default=DEFAULT_HOST,
                      help=f"Address to bind; any other than 127.0.0.1/localhost/::1 needs --token or {TOKEN_ENV}. "
                           "Default: %(default)s")
    args.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port. Default: %(default)s")
    args.add_argument("--token", default=None,
                      help=f"API token every /api/ request but GET /api/status must carry (Authorization: Bearer "
                           f"<token>); default: the {TOKEN_ENV} environment variable, else none.")
    args.add_argument("--max_upload_mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                      help="Largest request body (all its files together), in MB. Default: %(default)s")
    args.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                      help="Largest image or video frame, in pixels (checked before decoding). Default: %(default)s")
    args.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N. Default: %(default)s")
    args.add_argument("--backend", default="auto",
                      help="torch, onnx or auto (ONNX Runtime on CPU, PyTorch on CUDA). Default: %(default)s")
    args.add_argument("--jobs_dir", type=Path, default=DEFAULT_JOBS_DIR,
                      help="Folder of the video jobs (one subfolder each). Default: %(default)s")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Checks the flags, builds the app and serves it until Ctrl-C or SIGTERM (argparse's usage errors exit 2,
as a bad setting does)."""
    options = parser().parse_args(argv)
    config = ServiceConfig(results_path=Path(options.results_path), host=options.host, port=options.port,
                           token=token_from(options.token), max_upload_mb=options.max_upload_mb,
                           max_pixels=options.max_pixels, device=options.device, backend=options.backend,
                           jobs_dir=options.jobs_dir)
    import uvicorn  # the heavy imports (torch, the engine) come once the flags are known to be good

    from service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
