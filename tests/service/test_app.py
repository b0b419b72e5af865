"""The service's endpoints through FastAPI's TestClient: good input, bad input (status, one-line detail, the
service still answering afterwards), tokens, concurrency, video jobs."""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import struct
import threading
import time
import zipfile
import zlib

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.inspection import MIN_DEFECT_AREA
from size_analyzer import DefectSizeAnalyzer

JOB_TIMEOUT_S = 120.0


# ---------------------------------------------------------------- helpers

def png_bytes(image: np.ndarray) -> bytes:
    """An image encoded as PNG."""
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def decode_png(text: str, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """A base64 PNG of a response, decoded."""
    image = cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), flags)
    assert image is not None
    return image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """An 8-bit RGB PNG claiming this size whose pixel data stops after the first rows (cheap to claim 100 Mpx:
    the header is all a size check reads)."""
    rows = zlib.compress(bytes(4 * (1 + 3 * width)))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b""))


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deflated zip archive of these members, built in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def assert_error(response, status: int, *needles: str) -> str:
    """The response is JSON {"detail": one line} with this status, naming every needle."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, detail
    for needle in needles:
        assert needle in detail, detail
    return detail


def assert_serving(client: TestClient) -> None:
    """The service still answers /api/status."""
    response = client.get("/api/status")
    assert response.status_code == 200 and "version" in response.json()


@pytest.fixture
def make_client(service_config):
    """Builds clients of apps with changed settings (ServiceConfig fields); all closed after the test."""
    clients = []

    def make(**changes) -> TestClient:
        client = TestClient(create_app(dataclasses.replace(service_config, **changes)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def wait_for_job(client: TestClient, job_id: str, headers: dict | None = None) -> dict:
    """Polls a job until it is done or failed."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        state = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if state["state"] in ("done", "failed"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end within {JOB_TIMEOUT_S:.0f} s")


# ---------------------------------------------------------------- status, models, load

def test_status_lists_settings_and_loaded_models(client, service_model_id):
    status = client.get("/api/status").json()
    assert status["device"] == "cpu" and status["backend"] == "torch" and status["loaded_models"] == []
    assert status["auth_required"] is False and status["max_upload_mb"] == 20.0
    assert isinstance(status["version"], str) and status["version"]
    client.post("/api/load_model", json={"model_id": service_model_id})
    assert client.get("/api/status").json()["loaded_models"] == [service_model_id]


def test_models_lists_the_model_with_checkpoint_thresholds_and_results_csv_metrics(client, service_results,
                                                                                   service_model_id, torch_engine):
    models = client.get("/api/models").json()["models"]
    assert [m["model_id"] for m in models] == [service_model_id]
    entry = models[0]
    assert (entry["method"], entry["class_name"], entry["backbone"], entry["imagesize"], entry["loaded"]) == (
        "glass", "mvtec_toy", "efficientnet_lite0", 64, False)
    assert entry["image_threshold"] == pytest.approx(torch_engine.threshold)
    assert entry["pixel_threshold"] == pytest.approx(torch_engine.info.pixel_threshold)
    row = next(line.split(",") for line in (service_results / "results.csv").read_text().splitlines()
               if line.startswith("glass,mvtec_toy,"))
    assert entry["metrics"]["image_auroc"] == pytest.approx(float(row[2]))
    assert entry["metrics"]["pixel_pro"] == pytest.approx(float(row[6]))


def test_load_model_by_id_or_class_name(client, service_model_id):
    by_id = client.post("/api/load_model", json={"model_id": service_model_id})
    assert by_id.status_code == 200 and by_id.json()["loaded"] is True
    by_class = client.post("/api/load_model", json={"class_name": "mvtec_toy"})
    assert by_class.status_code == 200 and by_class.json()["model_id"] == service_model_id
    assert client.get("/api/models").json()["models"][0]["loaded"] is True


def test_docs_and_the_page_are_served_without_a_token(make_client):
    client = make_client(token="s3cret")
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/status", "/api/models", "/api/load_model", "/api/test_image", "/api/batch_test", "/api/video",
            "/api/jobs/{job_id}", "/api/jobs/{job_id}/files/{name}"} <= set(paths)
    page = client.get("/")
    assert page.status_code in (200, 404)  # 404 (JSON, one line) until the page is installed
    if page.status_code == 200:
        assert "<html" in page.text.lower()


# ---------------------------------------------------------------- test_image

def test_test_image_score_and_map_are_the_engines(loaded_client, defect_png, torch_engine, service_model_id):
    image = cv2.imdecode(np.frombuffer(defect_png, np.uint8), cv2.IMREAD_COLOR)
    expected = torch_engine.predict([image])[0]
    response = loaded_client.post("/api/test_image", files={"file": ("blob.png", defect_png, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["file"], body["model_id"], body["width"], body["height"]) == ("blob.png", service_model_id, 64, 64)
    assert body["score"] == pytest.approx(expected.score, abs=1e-6)
    assert body["threshold"] == pytest.approx(torch_engine.threshold)
    assert body["decision"] == ("defect" if expected.score >= torch_engine.threshold else "good")
    assert body["margin"] == pytest.approx(body["score"] - body["threshold"])
    assert body["pixel_threshold"] == pytest.approx(torch_engine.info.pixel_threshold)
    levels = decode_png(body["map_png"])
    assert levels.shape == (64, 64) and levels.dtype == np.uint8
    assert np.abs(levels.astype(int) - np.rint(expected.anomaly_map * 255).astype(int)).max() <= 1
    assert np.array_equal(decode_png(body["original_png"], cv2.IMREAD_COLOR), image)
    assert decode_png(body["overlay_png"], cv2.IMREAD_COLOR).shape == image.shape
    measured = DefectSizeAnalyzer(1.0, "mm", MIN_DEFECT_AREA).analyze_defects(expected.anomaly_map,
                                                                              body["pixel_threshold"])
    assert [r["area_px"] for r in body["regions"]] == [d.area_px for d in measured.defects]


def test_threshold_and_pixel_size_change_decision_regions_and_units(loaded_client, defect_png):
    low = loaded_client.post("/api/test_image", files={"file": ("b.png", defect_png)},
                             data={"threshold": "0.0", "pixel_size": "0.5", "unit": "mm"}).json()
    high = loaded_client.post("/api/test_image", files={"file": ("b.png", defect_png)},
                              data={"threshold": "1", "unit": "px"}).json()
    assert low["decision"] == "defect" and high["decision"] == "good" and low["score"] == high["score"]
    assert low["threshold"] == 0.0 and low["pixel_threshold"] == 0.0 and high["pixel_threshold"] == 1.0
    assert len(low["regions"]) == 1  # the whole map is at or above 0: one region over the image
    region = low["regions"][0]
    assert (region["x"], region["y"], region["w"], region["h"], region["area_px"]) == (0, 0, 64, 64, 64 * 64)
    assert region["area"] == pytest.approx(64 * 64 * 0.25) and region["length"] == region["width"] == 32.0
    assert region["unit"] == "mm" and region["severity"] == "critical" and 0 <= region["max_score"] <= 1
    assert high["regions"] == [] or all(r["max_score"] >= 1.0 for r in high["regions"])


def test_concurrent_requests_on_one_model_score_as_sequential_ones(loaded_client, tiny_model):
    test_dir = tiny_model.data_path / "toy" / "test"
    payloads = [(path.relative_to(test_dir).as_posix(), path.read_bytes()) for path in sorted(test_dir.rglob("*.png"))]
    sequential = {name: loaded_client.post("/api/test_image", files={"file": (name, data)}).json()["score"]
                  for name, data in payloads}
    results: list[tuple[str, float]] = []
    errors: list[str] = []

    def worker(offset: int) -> None:
        for name, data in payloads[offset:] + payloads[:offset]:
            response = loaded_client.post("/api/test_image", files={"file": (name, data)})
            if response.status_code != 200:
                errors.append(response.text)
            else:
                results.append((name, response.json()["score"]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 4 * len(payloads)
    for name, score in results:
        assert score == pytest.approx(sequential[name], abs=1e-6), name


# ---------------------------------------------------------------- batch_test

def test_batch_of_files_and_a_zip_scores_each_image_and_reports_bad_ones(loaded_client, defect_png, good_png):
    single = loaded_client.post("/api/test_image", files={"file": ("d.png", defect_png)}).json()["score"]
    archive = zip_bytes({"imgs/": b"", "imgs/good.png": good_png, "imgs/notes.txt": b"just text",
                         "imgs/defect.png": defect_png})
    response = loaded_client.post("/api/batch_test", files=[("files", ("d.png", defect_png)),
                                                            ("files", ("pack.zip", archive))],
                                  data={"threshold": "0.5"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["threshold"] == 0.5
    rows = body["results"]
    assert [r["file"] for r in rows] == ["d.png", "imgs/good.png", "imgs/notes.txt", "imgs/defect.png"]
    assert rows[0]["score"] == pytest.approx(single, abs=1e-6) and rows[3]["score"] == pytest.approx(single, abs=1e-6)
    assert rows[0]["decision"] == ("defect" if single >= 0.5 else "good") and rows[0]["error"] is None
    assert rows[0]["margin"] == pytest.approx(single - 0.5) and isinstance(rows[0]["regions"], int)
    bad = rows[2]
    assert bad["score"] is None and bad["decision"] is None and "not an image" in bad["error"]


# ---------------------------------------------------------------- bad input

HUGE_PNG = png_header(10_000, 10_000)  # claims 100 Mpx; nothing to decode


def truncated_png(png: bytes) -> bytes:
    """The first half of a PNG."""
    return png[: len(png) // 2]


BAD_REQUESTS = {
    # name: (method, path, request arguments (a function of the fixtures' PNG), status, detail needle)
    "empty upload": ("post", "/api/test_image", lambda png: {"files": {"file": ("e.png", b"")}}, 400, "empty"),
    "text named .png": ("post", "/api/test_image", lambda png: {"files": {"file": ("t.png", b"hello\n")}},
                        415, "not an image"),
    "truncated PNG": ("post", "/api/test_image", lambda png: {"files": {"file": ("c.png", truncated_png(png))}},
                      400, "could not be decoded"),
    "100-megapixel image": ("post", "/api/test_image", lambda png: {"files": {"file": ("big.png", HUGE_PNG)}},
                            413, "10000x10000"),
    "unknown model": ("post", "/api/load_model", lambda png: {"json": {"model_id": "models/backbone_0/nope"}},
                      404, "no such model"),
    "../ model id": ("post", "/api/load_model", lambda png: {"json": {"model_id": "../../etc"}}, 400, "'..'"),
    "absolute model id": ("post", "/api/load_model", lambda png: {"json": {"model_id": "/etc/passwd"}}, 400,
                          "relative"),
    "unknown model in test_image": ("post", "/api/test_image",
                                    lambda png: {"files": {"file": ("b.png", png)}, "data": {"model_id": "x/y"}},
                                    404, "no such model"),
    "unknown class": ("post", "/api/load_model", lambda png: {"json": {"class_name": "mvtec_none"}}, 404,
                      "mvtec_none"),
    "neither id nor class": ("post", "/api/load_model", lambda png: {"json": {}}, 400, "model_id or class_name"),
    "load_model without JSON": ("post", "/api/load_model", lambda png: {"content": b"nonsense"}, 422, ""),
    "threshold not a number": ("post", "/api/test_image",
                               lambda png: {"files": {"file": ("b.png", png)}, "data": {"threshold": "abc"}},
                               400, "threshold"),
    "threshold above 1": ("post", "/api/test_image",
                          lambda png: {"files": {"file": ("b.png", png)}, "data": {"threshold": "1.5"}},
                          400, "[0, 1]"),
    "negative pixel_size": ("post", "/api/test_image",
                            lambda png: {"files": {"file": ("b.png", png)},
                                         "data": {"pixel_size": "-1", "unit": "mm"}}, 400, "pixel_size"),
    "unknown unit": ("post", "/api/test_image",
                     lambda png: {"files": {"file": ("b.png", png)}, "data": {"unit": "furlong"}}, 400, "unit"),
    "no file field": ("post", "/api/test_image", lambda png: {"data": {"threshold": "0.5"}}, 422, "file"),
    "nonexistent job": ("get", "/api/jobs/0123456789abcdef0123456789abcdef", lambda png: {}, 404, "no such job"),
    "job id not hex": ("get", "/api/jobs/..%2F..%2Fetc", lambda png: {}, 404, ""),
    "file of a nonexistent job": ("get", "/api/jobs/0123456789abcdef0123456789abcdef/files/report.json",
                                  lambda png: {}, 404, "no such job"),
    "zip without images": ("post", "/api/batch_test",
                           lambda png: {"files": [("files", ("z.zip", zip_bytes({"a.txt": b"a", "b.csv": b"1,2"})))]},
                           415, "no image could be scored"),
    "empty zip": ("post", "/api/batch_test", lambda png: {"files": [("files", ("z.zip", zip_bytes({})))]}, 400,
                  "holds no files"),
    "text to /api/video": ("post", "/api/video", lambda png: {"files": {"file": ("v.mp4", b"not a video")}}, 415,
                           "not a video"),
    "image to /api/video": ("post", "/api/video", lambda png: {"files": {"file": ("v.mp4", png)}}, 415,
                            "an image, not a video"),
    "max_frames 0": ("post", "/api/video",
                     lambda png: {"files": {"file": ("v.mp4", b"x")}, "data": {"max_frames": "0"}}, 400,
                     "max_frames"),
    "unknown route": ("get", "/api/nothing", lambda png: {}, 404, ""),
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the service silences it; pytest resets
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_their_status_and_one_line_and_the_service_goes_on(loaded_client, defect_png, case):
    method, path, arguments, status, needle = BAD_REQUESTS[case]
    response = getattr(loaded_client, method)(path, **arguments(defect_png))
    assert_error(response, status, needle)
    assert_serving(loaded_client)


def test_no_model_loaded_is_409(client, defect_png):
    for path, files in (("/api/test_image", {"file": ("b.png", defect_png)}),
                        ("/api/batch_test", [("files", ("b.png", defect_png))]),
                        ("/api/video", {"file": ("v.mp4", b"x")})):
        assert_error(client.post(path, files=files), 409, "no model loaded")
    assert_serving(client)


def test_too_big_uploads_are_413_with_and_without_content_length(make_client, service_model_id):
    client = make_client(max_upload_mb=0.05)  # 52 kB
    client.post("/api/load_model", json={"model_id": service_model_id})
    big = png_bytes(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8))  # ~120 kB
    assert_error(client.post("/api/test_image", files={"file": ("n.png", big)}), 413, "--max_upload_mb")

    body = (b'--x0x\r\nContent-Disposition: form-data; name="file"; filename="n.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + big + b"\r\n--x0x--\r\n")

    def chunks():  # no Content-Length: the limit is counted on the bytes as they arrive
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    response = client.post("/api/test_image", content=chunks(),
                           headers={"Content-Type": "multipart/form-data; boundary=x0x"})
    assert_error(response, 413, "--max_upload_mb")
    assert_serving(client)


def test_zip_bombs_are_413(make_client, service_model_id, defect_png):
    client = make_client(max_upload_mb=1)
    client.post("/api/load_model", json={"model_id": service_model_id})
    one_big = zip_bytes({"a.png": defect_png, "zeros.png": bytes(3 * 1024 * 1024)})  # 3 MB of zeros, ~3 kB zipped
    assert len(one_big) < 64 * 1024
    assert_error(client.post("/api/batch_test", files=[("files", ("bomb.zip", one_big))]), 413, "zeros.png")
    many = zip_bytes({f"z{i}.png": bytes(900 * 1024) for i in range(6)})  # 5.4 MB in all > 4 x 1 MB
    assert_error(client.post("/api/batch_test", files=[("files", ("many.zip", many))]), 413, "inflates")
    assert_serving(client)


def test_tokens_guard_every_api_request_but_status(make_client, service_model_id):
    client = make_client(token="s3cret")
    status = client.get("/api/status")
    assert status.status_code == 200 and status.json()["auth_required"] is True
    assert_error(client.get("/api/models"), 401, "missing API token")
    assert_error(client.get("/api/models", headers={"Authorization": "Bearer nope"}), 401, "wrong API token")
    assert_error(client.get("/api/models", headers={"X-API-Token": "s3cret-not"}), 401, "wrong API token")
    assert_error(client.post("/api/load_model", json={"model_id": service_model_id}), 401, "missing")
    assert_error(client.get("/api/jobs/0123456789abcdef0123456789abcdef"), 401, "missing")
    assert client.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/api/models", headers={"X-API-Token": "s3cret"}).status_code == 200
    assert_serving(client)


# ---------------------------------------------------------------- video jobs

def test_a_video_job_runs_to_done_with_report_defect_frames_and_video(loaded_client, tiny_video):
    response = loaded_client.post("/api/video", files={"file": ("belt.mp4", tiny_video.read_bytes(), "video/mp4")},
                                  data={"threshold": "0.5", "pixel_size": "0.5", "unit": "mm"})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert len(job_id) == 32 and int(job_id, 16) >= 0
    state = wait_for_job(loaded_client, job_id)
    assert state["state"] == "done", state
    assert state["progress"] == 1.0 and state["frames_done"] == state["frames_total"] == 12 and state["error"] is None
    report = state["report"]
    assert report["settings"]["image_threshold"] == 0.5 and report["settings"]["pixel_size"] == 0.5
    assert report["performance"]["frames"] == 12
    assert len(state["defects"]) == len(report["defects"]) >= 1
    for defect in state["defects"]:
        frame = loaded_client.get(defect["frame_url"])
        assert frame.status_code == 200
        image = cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (64, 64, 3) and "defect_id" in defect and "severity" in defect
    video = loaded_client.get(state["video_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4" and len(video.content) > 1000
    assert json.loads(loaded_client.get(state["report_url"]).content)["defects"] == report["defects"]


def test_a_video_job_in_pixels_reports_pixel_units(loaded_client, tiny_video):
    """The default unit px reaches the tracking command: report, totals and defects say px, not mm."""
    response = loaded_client.post("/api/video", files={"file": ("belt.mp4", tiny_video.read_bytes(), "video/mp4")},
                                  data={"threshold": "0.5", "max_frames": "6"})
    state = wait_for_job(loaded_client, response.json()["job_id"])
    assert state["state"] == "done", state
    report = state["report"]
    assert report["settings"]["physical_unit"] == "px" and report["settings"]["pixel_size"] == 1.0
    assert report["totals"]["area_unit"] == "px^2" and report["totals"]["speed_unit"] == "px/s"
    assert all(defect["physical_unit"] == "px" for defect in report["defects"])


def test_job_files_cannot_leave_the_job_folder(loaded_client, tiny_video, service_config):
    job_id = loaded_client.post("/api/video", files={"file": ("belt.mp4", tiny_video.read_bytes())},
                                data={"max_frames": "2"}).json()["job_id"]
    assert wait_for_job(loaded_client, job_id)["state"] == "done"
    secret = service_config.jobs_dir / "secret.txt"
    secret.write_text("outside the job folder")
    for name in ("..%2Fsecret.txt", "%2E%2E/secret.txt", "defects/..%2F..%2Fsecret.txt", "%2Fetc%2Fpasswd",
                 ".hidden", "defects", "nothing.png"):
        assert_error(loaded_client.get(f"/api/jobs/{job_id}/files/{name}"), 404)
    assert loaded_client.get(f"/api/jobs/{job_id}/files/tracking.mp4").status_code == 200
    assert_serving(loaded_client)
