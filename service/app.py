"""The inspection service's FastAPI app: REST endpoints under /api/, the web page at /, OpenAPI docs at /docs.

`create_app(config)` builds one app with its own model registry and job queue (no module-level state). The
endpoints that score are plain `def` functions: FastAPI runs them in its thread pool, so CPU-bound scoring never
blocks the event loop, and requests on one model take turns on its engine's lock. Every error answer is JSON
`{"detail": "<one line>"}`; the service keeps serving after any of them. The API contract (fields, statuses)
is service/CONTRACT.md.
"""
from __future__ import annotations

import contextlib
import hmac
import logging
import math
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from errors import UserError, first_line
from paths import make_writable_folder
from service import service_version
from service.config import ServiceConfig, ServiceConfigError
from service.http_errors import ApiError
from service.inspection import (InspectParams, batch_row, failed_row, image_response, inspect,
                                parse_int)
from service.jobs import Job, JobQueue, JobSettings
from service.models import ModelRegistry
from service.uploads import archive_members, decode_image, image_size, is_zip, read_upload, save_video

LOGGER = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MULTIPART_OVERHEAD = 256 * 1024  # bytes a request may carry beyond --max_upload_mb: boundaries, headers, fields
MAX_BATCH_IMAGES = 500  # images scored by one /api/batch_test (files and zip members together)
# Image requests decoding, scoring and encoding at once (the others wait in the thread pool): bounds the memory
# of decoded images and maps (40 Mpx each at most) whatever the number of clients.
IMAGE_SLOTS = 4
OPEN_PATHS = (("GET", "/api/status"), ("HEAD", "/api/status"))  # the only /api/ requests without a token

# An optional text form field. Numbers arrive as text and are parsed by the endpoint: a bad value is a 400 that
# names the field (service.inspection.parse_float), not a validation error.
Text = Annotated[str | None, Form()]


class LoadRequest(BaseModel):
    """The body of POST /api/load_model: a model_id or a class_name."""

    model_id: str | None = None
    class_name: str | None = None


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON every error gets: {"detail": "<one line>"}."""
    return JSONResponse({"detail": one_line(detail)}, status_code=status, headers=headers)


def one_line(text: str) -> str:
    """A message reduced to its first line (and printable characters)."""
    line = first_line(ValueError(text)) if text.strip() else "error"
    return "".join(ch if ch.isprintable() else "?" for ch in line)


async def send_error(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Sends an error answer straight from ASGI middleware."""
    response = error_response(status, detail, headers)
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class TokenGuard:
    """ASGI middleware: with a token set, every /api/ request but GET /api/status carries it (Authorization:
    Bearer <token>, or X-API-Token: <token>); else 401, before any of the body is read."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode("utf-8") if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.token is None or scope["type"] != "http" or not scope["path"].startswith("/api/")
                or (scope["method"], scope["path"]) in OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-token")
        scheme, _, value = headers.get(b"authorization", b"").partition(b" ")
        if given is None and scheme.lower() == b"bearer":
            given = value.strip()
        if given is None:
            await send_error(send, 401, "missing API token; send the header Authorization: Bearer <token>",
                             {"WWW-Authenticate": "Bearer"})
        elif not hmac.compare_digest(given, self.token):
            await send_error(send, 401, "wrong API token; send the token the service was started with",
                             {"WWW-Authenticate": "Bearer"})
        else:
            await self.app(scope, receive, send)


class UploadTooLarge(StarletteHTTPException):
    """A request body beyond the limit (raised while it is read: FastAPI answers it as an HTTP error)."""


class UploadLimit:
    """ASGI middleware: a request body larger than `limit` bytes gets 413, from its Content-Length before
    anything is read, else as soon as the bytes received pass the limit (chunked uploads too)."""

    def __init__(self, app: ASGIApp, limit: int, shown_mb: float) -> None:
        self.app = app
        self.limit = limit
        self.message = (f"upload larger than the {shown_mb:g} MB limit; send less at once or start the service "
                        "with a larger --max_upload_mb")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await send_error(send, 413, self.message)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise UploadTooLarge(413, self.message)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except UploadTooLarge:
            if started:
                raise
            await send_error(send, 413, self.message)


def upload_name(upload: UploadFile) -> str:
    """The uploaded file's name as given (only printable characters, at most 200), or 'upload'."""
    return one_line(upload.filename or "upload")[:200]


def create_app(config: ServiceConfig) -> FastAPI:
    """The service for one configuration: its own model registry, job queue, routes and error handlers."""
    try:
        make_writable_folder(config.jobs_dir)
    except OSError as err:
        raise ServiceConfigError(f"--jobs_dir {config.jobs_dir}: cannot create or write there ({err.strerror}); "
                                 "choose a writable folder") from None
    registry = ModelRegistry(config.results_path, config.device, config.backend)
    jobs = JobQueue(config.jobs_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.stop()

    app = FastAPI(title="GLASS inspection service", version=service_version(), lifespan=lifespan,
                  description="Score images and videos with the models under the results folder "
                              "(service/CONTRACT.md).")
    app.state.config, app.state.registry, app.state.jobs = config, registry, jobs
    add_error_handlers(app)
    app.add_middleware(UploadLimit, limit=config.max_upload_bytes + MULTIPART_OVERHEAD,
                       shown_mb=config.max_upload_mb)
    app.add_middleware(TokenGuard, token=config.token)  # added last: runs first, before any body is read
    add_routes(app, config, registry, jobs)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON {"detail": "<one line>"} with its status."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, str(err))

    @app.exception_handler(UserError)
    async def user_error(request: Request, err: UserError) -> JSONResponse:
        return error_response(400, str(err))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return error_response(err.status_code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = err.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path"))
        return error_response(422, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        LOGGER.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, f"internal error ({type(err).__name__}); see the service log")


def add_routes(app: FastAPI, config: ServiceConfig, registry: ModelRegistry, jobs: JobQueue) -> None:
    """The page, /api/status, /api/models, /api/load_model, /api/test_image, /api/batch_test, /api/video and
    /api/jobs."""
    upload_limit = config.max_upload_bytes
    slots = threading.BoundedSemaphore(IMAGE_SLOTS)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            raise ApiError(404, "the web page is not installed (service/static/index.html); use the API at /docs")
        return FileResponse(index)

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        """Version, device, backend, loaded models, whether a token is needed, the upload limit."""
        return {"version": service_version(), "device": config.device_type, "backend": config.backend,
                "loaded_models": registry.loaded_ids(), "auth_required": config.token is not None,
                "max_upload_mb": float(config.max_upload_mb)}

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        """Every model directory under the results folder, with method, thresholds and metrics."""
        return {"models": [entry.to_dict(registry.is_loaded(entry.model_id)) for entry in registry.scan()]}

    @app.post("/api/load_model")
    def load_model(request: LoadRequest) -> dict[str, Any]:
        """Loads a model by model_id or class_name; answers its entry."""
        if bool(request.model_id) == bool(request.class_name):
            raise ApiError(400, "give either model_id or class_name (GET /api/models lists them)")
        entry = registry.find(request.model_id) if request.model_id else registry.find_class(request.class_name)
        registry.load(entry)
        return entry.to_dict(loaded=True)

    @app.post("/api/test_image")
    def test_image(file: Annotated[UploadFile, File()], model_id: Text = None, threshold: Text = None,
                   pixel_size: Text = None, unit: Text = None) -> dict[str, Any]:
        """One image -> score, decision, regions, overlay, map and original PNGs."""
        params = InspectParams.from_form(threshold, pixel_size, unit)
        name = upload_name(file)
        data = read_upload(file.file, name, upload_limit)
        with slots:
            image = decode_image(data, name, config.max_pixels)
            model = registry.model_for(model_id)
            return image_response(name, model.entry.model_id, image, inspect(model, image, params), params)

    @app.post("/api/batch_test")
    def batch_test(files: Annotated[list[UploadFile], File()], model_id: Text = None, threshold: Text = None,
                   pixel_size: Text = None, unit: Text = None) -> dict[str, Any]:
        """Several images, or zips of images -> one row per image (a bad one gets its error in its row)."""
        params = InspectParams.from_form(threshold, pixel_size, unit)
        model = registry.model_for(model_id)
        rows: list[dict[str, Any]] = []
        statuses: list[int] = []
        for name, data in batch_items(files, upload_limit):
            if len(rows) == MAX_BATCH_IMAGES:
                raise ApiError(413, f"more than {MAX_BATCH_IMAGES} images in one batch; send them in parts")
            try:
                with slots:
                    rows.append(batch_row(name, inspect(model, decode_image(data, name, config.max_pixels),
                                                        params)))
            except ApiError as err:
                rows.append(failed_row(name, str(err)))
                statuses.append(err.status)
        if len(statuses) == len(rows):
            status = 415 if statuses and all(code == 415 for code in statuses) else 400
            first = rows[0]["error"] if rows else "no file"
            raise ApiError(status, f"no image could be scored among {len(rows)} file(s); first: {first}")
        threshold_used = model.engine.threshold if params.threshold is None else params.threshold
        return {"model_id": model.entry.model_id, "threshold": float(threshold_used), "results": rows}

    @app.post("/api/video", status_code=202)
    def video(file: Annotated[UploadFile, File()], model_id: Text = None, threshold: Text = None,
              pixel_size: Text = None, unit: Text = None, max_frames: Text = None) -> dict[str, str]:
        """A video -> a queued tracking job's id (HTTP 202); GET /api/jobs/{id} follows it."""
        params = InspectParams.from_form(threshold, pixel_size, unit)
        frames = parse_int("max_frames", max_frames, 1)
        model = registry.model_for(model_id)
        name = upload_name(file)
        data = read_upload(file.file, name, upload_limit)
        job_id, folder = jobs.new_folder()
        try:
            path, info = save_video(data, name, folder, config.max_pixels)
            settings = JobSettings(model.entry.class_dir, config.device, config.backend, params.threshold,
                                   params.pixel_size, params.shown_unit, frames)
            total = min(info.frame_count, frames or math.inf)
            jobs.submit(Job(job_id, folder, path, settings, frames_total=int(total)))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return {"job_id": job_id}

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        """A job's state and progress; once done its report, defect frames and file URLs."""
        return jobs.status(job_id)

    @app.get("/api/jobs/{job_id}/files/{name:path}")
    def job_file(job_id: str, name: str) -> FileResponse:
        """A file of the job's folder (video, report, defect frame); nothing outside it."""
        return FileResponse(job_file_path(jobs.folder(job_id), name))


def batch_items(files: list[UploadFile], limit: int) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every image of a batch: each uploaded file, a zip's members in its place."""
    for upload in files:
        name = upload_name(upload)
        data = read_upload(upload.file, name, limit)
        if data and image_size(data) is None and is_zip(data):
            yield from archive_members(data, name, limit)
        else:
            yield name, data


def job_file_path(folder: Path, name: str) -> Path:
    """The file `name` (relative, POSIX) of a job folder: 404 for anything hidden, outside it or not a file."""
    parts = PurePosixPath(name).parts
    missing = ApiError(404, f"{one_line(name)!r}: no such file in this job")
    if not parts or name.startswith("/") or "\\" in name or any(part in (".", "..") or part.startswith(".")
                                                                for part in parts):
        raise missing
    path = (folder / Path(*parts)).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise missing
    return path



