"""The service's web page in a real browser: the system Chromium driven by Selenium against `python -m service`
on the tiny results folder. A quality engineer's session (load a model, test an image, tune the threshold with the
slider, a batch, a video job to its gallery and report), API errors on the page, and the token prompt.

Set GLASS_SERVICE_SCREENSHOT=docs/images/service_page.png to also write the session's screenshot there (README).
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Chromium and its driver on PATH (Debian: apt-get install chromium chromium-driver; .ci/run does)")

WAIT_S = 60.0  # the longest wait for the page (a video job on 2 CPU cores included)
WINDOW = (1280, 1000)
SCREENSHOT_ENV = "GLASS_SERVICE_SCREENSHOT"
TOKEN = "web-test-token"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium through the system chromedriver (nothing downloaded)."""
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait(browser: WebDriver, condition, message: str, timeout: float = WAIT_S):
    """Waits until condition(browser) is truthy (its value); on time-out fails with the page's error line."""
    try:
        return WebDriverWait(browser, timeout).until(condition)
    except TimeoutException as err:
        shown = browser.find_element(By.ID, "error").text
        raise AssertionError(f"{message} (page error line: {shown!r})") from err


def element(browser: WebDriver, element_id: str):
    """The element with this id."""
    return browser.find_element(By.ID, element_id)


def open_page(browser: WebDriver, url: str) -> None:
    """Opens the page afresh and waits for the models table."""
    browser.set_window_size(*WINDOW)
    browser.get(f"{url}/")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#models-body tr"), "the models table did not fill")


def load_model(browser: WebDriver, model_id: str) -> None:
    """Clicks the model's Load button and waits until the page marks it in use."""
    browser.find_element(By.CSS_SELECTOR, f"button.load-button[data-model-id='{model_id}']").click()
    row_class = "const r = document.querySelector(arguments[0]); return r ? r.className : null;"  # rows get redrawn
    wait(browser, lambda b: b.execute_script(row_class, f"tr[data-model-id='{model_id}']") == "loaded current",
         "the model was not marked loaded and in use")
    assert element(browser, "current-model").text == model_id


def image_loaded(browser: WebDriver, element_id: str) -> int:
    """The natural width of an <img> once it has loaded, else 0."""
    return browser.execute_script(
        "const i = document.getElementById(arguments[0]); return i.complete ? i.naturalWidth : 0;", element_id)


def upload_image(browser: WebDriver, path: Path) -> None:
    """Chooses an image in the image test's file input and waits for its original and heatmap."""
    element(browser, "image-input").send_keys(str(path))
    wait(browser, lambda b: element(b, "image-file").text.startswith(path.name) and image_loaded(b, "overlay-image")
         and image_loaded(b, "original-image"), f"{path.name}: no heatmap appeared")


def server_result(url: str, path: Path, model_id: str) -> dict:
    """The API's own answer for an image (the reference the page's numbers are checked against)."""
    with path.open("rb") as file:
        response = httpx.post(f"{url}/api/test_image", files={"file": (path.name, file)}, data={"model_id": model_id},
                              timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def decode_png(data: str) -> np.ndarray:
    """A base64 PNG as an array (gray stays 2-D)."""
    return cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)


def regions_at(anomaly_map: np.ndarray, threshold: float) -> int:
    """Connected regions (8-neighbours) of the map's pixels >= threshold * 255, as the page cuts them."""
    count, _ = cv2.connectedComponents((anomaly_map >= threshold * 255).astype(np.uint8), connectivity=8)
    return count - 1


def slide_to(browser: WebDriver, value: float) -> float:
    """Clicks the threshold slider's track where `value` lies; the value the slider took."""
    slider = element(browser, "threshold-slider")
    width = slider.size["width"]
    thumb = 16  # Chromium's thumb: the track's ends are half a thumb in from the element's edges
    offset = thumb / 2 + value * (width - thumb) - width / 2
    ActionChains(browser).move_to_element_with_offset(slider, round(offset), 0).click().perform()
    taken = float(slider.get_attribute("value"))
    assert abs(taken - value) < 0.03, (value, taken)
    return taken


def shown_decision(browser: WebDriver) -> tuple[str, str, float]:
    """(decision, its colour class, margin) the page shows."""
    decision = element(browser, "decision")
    margin = float(element(browser, "margin").text)
    return decision.get_attribute("data-decision"), decision.get_attribute("class"), margin


def requests_sent(browser: WebDriver, endpoint: str) -> int:
    """How many requests the page has sent to an endpoint (the browser's resource timing)."""
    return browser.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.endsWith(arguments[0])).length;", endpoint)


def check_slider(browser: WebDriver, reference: dict) -> None:
    """The slider re-decides in the page: decision, colour, margin and regions follow it, no request is sent."""
    score = reference["score"]
    anomaly_map = decode_png(reference["map_png"])
    assert element(browser, "score").text == f"{score:.4f}"
    assert element(browser, "threshold").text == f"{reference['threshold']:.4f}"
    assert shown_decision(browser)[0] == reference["decision"]
    assert int(element(browser, "region-count").text) == regions_at(anomaly_map, reference["threshold"])
    sent = requests_sent(browser, "/api/test_image")
    assert sent == 1  # the upload's (the count sees the page's requests)
    seen = set()
    for target in (score / 2, (score + 1) / 2, score / 2):  # below the score, above it, below again
        value = slide_to(browser, target)
        decision, colour, margin = shown_decision(browser)
        expected = "defect" if score >= value else "good"
        assert (decision, colour) == (expected, f"decision {expected}")
        assert element(browser, "decision").text == expected.upper()
        assert margin == pytest.approx(score - value, abs=1e-4)
        assert int(element(browser, "region-count").text) == regions_at(anomaly_map, value)
        seen.add(decision)
    assert seen == {"good", "defect"}
    element(browser, "threshold-slider").send_keys(Keys.HOME)  # 0: every pixel is in one region
    assert float(element(browser, "threshold-slider").get_attribute("value")) == 0.0
    assert shown_decision(browser)[0] == "defect" and element(browser, "region-count").text == "1"
    assert requests_sent(browser, "/api/test_image") == sent  # all of it without the server


def batch_rows(browser: WebDriver) -> list[dict[str, str]]:
    """The batch table's rows as shown, top to bottom."""
    rows = []
    for row in browser.find_elements(By.CSS_SELECTOR, "#batch-body tr"):
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        rows.append(dict(zip(("file", "score", "decision", "margin", "regions", "error"), cells)))
    return rows


def check_batch(browser: WebDriver, folder: Path, images: dict[str, bytes]) -> None:
    """Several images, a zip and a text file: one row each (the text file's with its error); the columns sort."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, data in images.items():
            zipped.writestr(f"zipped_{name}", data)
    (folder / "batch.zip").write_bytes(archive.getvalue())
    (folder / "notes.txt").write_text("not an image\n")
    paths = [folder / name for name in images] + [folder / "batch.zip", folder / "notes.txt"]
    element(browser, "batch-input").send_keys("\n".join(str(path) for path in paths))
    count = 2 * len(images) + 1
    wait(browser, lambda b: len(batch_rows(b)) == count, "the batch table did not show every file")
    rows = batch_rows(browser)
    assert sorted(row["file"] for row in rows) == sorted([*images, *(f"zipped_{n}" for n in images), "notes.txt"])
    failed = [row for row in rows if row["error"]]
    assert [row["file"] for row in failed] == ["notes.txt"] and failed[0]["score"] == "–"
    header = browser.find_element(By.CSS_SELECTOR, "#batch-table th[data-key='score']")
    header.click()
    scores = [row["score"] for row in batch_rows(browser)]
    assert scores[-1] == "–"  # the row without a score last
    assert scores[:-1] == sorted(scores[:-1], key=float) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    scores = [row["score"] for row in batch_rows(browser)]
    assert scores[:-1] == sorted(scores[:-1], key=float, reverse=True) and scores[-1] == "–"
    assert header.get_attribute("aria-sort") == "descending"
    browser.find_element(By.CSS_SELECTOR, "#batch-table th[data-key='file']").click()
    files = [row["file"] for row in batch_rows(browser)]
    assert files == sorted(files)


def check_video(browser: WebDriver, url: str, video: Path, threshold: float) -> None:
    """A video job with the slider's threshold runs to the end: progress 1, the report summary, one gallery frame
    per defect of the report, and the video and report links download."""
    slide_to(browser, threshold)
    value = float(element(browser, "threshold-slider").get_attribute("value"))
    element(browser, "use-slider").click()
    element(browser, "video-input").send_keys(str(video))
    wait(browser, lambda b: element(b, "video-state").get_attribute("data-state") in ("done", "failed"),
         "the video job did not end")
    assert element(browser, "video-state").get_attribute("data-state") == "done", element(browser, "error").text
    assert float(element(browser, "video-progress").get_attribute("value")) == 1.0
    report_href = element(browser, "report-link").get_attribute("href")
    report = httpx.get(report_href, timeout=30)
    assert report.status_code == 200
    report = report.json()
    assert report["settings"]["image_threshold"] == pytest.approx(value)  # the page sent the slider's threshold
    defects = report["totals"]["num_defects"]
    assert defects >= 1, "the tiny model found no defect at the slider's threshold: nothing for the gallery"
    assert element(browser, "report-defects").text == str(defects)
    assert element(browser, "report-frames").text == str(report["totals"]["total_frames"])
    wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#gallery figure.defect")) == defects
         and b.execute_script("return [...document.querySelectorAll('#gallery img')]"
                              ".every(i => i.complete && i.naturalWidth > 0);"), "the defect frames did not show")
    frames = browser.find_elements(By.CSS_SELECTOR, "#gallery img")
    assert len(frames) == sum(1 for defect in report["defects"] if defect.get("defect_frame"))
    annotated = httpx.get(element(browser, "video-link").get_attribute("href"), timeout=30)
    assert annotated.status_code == 200 and len(annotated.content) > 1000
    assert cv2.VideoCapture(str(write(video.parent / "annotated.mp4", annotated.content))).read()[0]


def write(path: Path, data: bytes) -> Path:
    """Writes bytes to a file; the path."""
    path.write_bytes(data)
    return path


def full_page_screenshot(browser: WebDriver, path: Path) -> None:
    """The whole page (the viewport stretched to its height, which a window may not reach) as a PNG."""
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": WINDOW[0], "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        browser.execute_script("window.scrollTo(0, 0);")
        assert browser.save_screenshot(str(path))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    shot = cv2.imread(str(path))
    assert shot is not None and shot.shape[1] >= WINDOW[0] - 20 and shot.shape[0] >= height


def test_inspection_session(browser: WebDriver, service_url: str, service_model_id: str, defect_png: bytes,
                            good_png: bytes, tiny_video: Path, tmp_path: Path):
    """Load the model, test an image (heatmap shown), move the slider across the score (the decision flips, no
    request), a batch sorted by its columns, a video job to its gallery and report; a screenshot of it all."""
    defect = write(tmp_path / "defect.png", defect_png)
    write(tmp_path / "good.png", good_png)  # beside it: the batch sends both
    open_page(browser, service_url)
    assert element(browser, "service-status").text.startswith("v")
    load_model(browser, service_model_id)
    upload_image(browser, defect)
    reference = server_result(service_url, defect, service_model_id)
    assert image_loaded(browser, "overlay-image") == reference["width"]
    assert element(browser, "regions-canvas").get_attribute("width") == str(reference["width"])
    check_slider(browser, reference)
    check_batch(browser, tmp_path, {"defect.png": defect_png, "good.png": good_png})
    # The video's threshold: the level a tenth of the test image's map lies above (regions to track).
    level = float(np.percentile(decode_png(reference["map_png"]), 90)) / 255
    check_video(browser, service_url, tiny_video, level)
    assert element(browser, "error").get_attribute("hidden") is not None  # no error on the way
    screenshot = tmp_path / "service_page.png"
    full_page_screenshot(browser, screenshot)
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, REPO / os.environ[SCREENSHOT_ENV])


def drop_file(browser: WebDriver, zone_id: str, name: str, data: bytes) -> None:
    """Drops a file onto a drop zone as a drag from the desktop does (a drop event carrying it)."""
    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[2]), c => c.charCodeAt(0));"
        "const transfer = new DataTransfer();"
        "transfer.items.add(new File([bytes], arguments[1], {type: 'image/png'}));"
        "const zone = document.getElementById(arguments[0]);"
        "zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));"
        "zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));",
        zone_id, name, base64.b64encode(data).decode("ascii"))


def test_api_errors_show_as_one_line(browser: WebDriver, service_url: str, service_model_id: str, good_png: bytes,
                                     tmp_path: Path):
    """A text file as the image: the API's 415 reason on one line; the page keeps working (an image dropped on it
    is scored) and clears the line; a bad field's 400 names the field."""
    open_page(browser, service_url)
    load_model(browser, service_model_id)
    notes = tmp_path / "notes.png"  # an image's name, not an image's content
    notes.write_text("hello\n")
    element(browser, "image-input").send_keys(str(notes))
    wait(browser, lambda b: element(b, "error").is_displayed(), "no error line appeared")
    line = element(browser, "error").text
    assert line.startswith("415: notes.png") and "\n" not in line
    drop_file(browser, "drop-zone", "dropped.png", good_png)  # dragged onto the drop zone this time
    wait(browser, lambda b: element(b, "image-file").text.startswith("dropped.png")
         and image_loaded(b, "overlay-image"), "the dropped image was not scored")
    assert not element(browser, "error").is_displayed()
    element(browser, "max-frames").send_keys("0")  # a bad field: the API's 400 names it
    element(browser, "video-input").send_keys(str(notes))
    wait(browser, lambda b: element(b, "error").is_displayed(), "no error line for the video")
    assert element(browser, "error").text.startswith("400: max_frames")


@pytest.fixture(scope="module")
def token_service_url(service_results: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app with a token, served by uvicorn in a thread of this process on a free loopback port (this process
    has imported torch already: it starts in a moment); a token makes every /api/ request but /api/status need it."""
    from service.app import create_app
    from service.config import ServiceConfig

    config = ServiceConfig(results_path=service_results, device="cpu", backend="torch", token=TOKEN,
                           jobs_dir=tmp_path_factory.mktemp("token_service_jobs"))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the token service did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert httpx.get(f"{url}/api/status", timeout=10).json()["auth_required"] is True
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


def submit_token(browser: WebDriver, token: str) -> None:
    """Types a token into the page's prompt and saves it."""
    field = element(browser, "token-input")
    field.clear()
    field.send_keys(token)
    element(browser, "token-save").click()


def test_token_is_asked_once_and_kept(browser: WebDriver, token_service_url: str, service_model_id: str,
                                      defect_png: bytes, tiny_video: Path, tmp_path: Path):
    """auth_required: the page asks for the token; a wrong one gets the 401 line and is asked again; the right
    one lists the models, stays in localStorage and is not asked again after a reload; with it the page scores
    an image and shows a video job's defect frames (fetched with the token)."""
    browser.get(f"{token_service_url}/")
    wait(browser, lambda b: element(b, "token-form").is_displayed(), "the page did not ask for the token")
    assert browser.find_elements(By.CSS_SELECTOR, "#models-body tr") == []
    submit_token(browser, "wrong")
    wait(browser, lambda b: element(b, "error").text.startswith("401: wrong API token"), "no 401 line")
    assert element(browser, "token-form").is_displayed()
    submit_token(browser, TOKEN)
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#models-body tr"), "the models did not appear")
    assert not element(browser, "token-form").is_displayed() and not element(browser, "error").is_displayed()
    assert browser.execute_script("return localStorage.getItem('glassServiceToken');") == TOKEN
    browser.refresh()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#models-body tr"), "the models did not appear again")
    assert not element(browser, "token-form").is_displayed()
    assert json.loads(browser.execute_script("return JSON.stringify(Object.keys(localStorage));")) == [
        "glassServiceToken"]
    load_model(browser, service_model_id)
    upload_image(browser, write(tmp_path / "defect.png", defect_png))
    slide_to(browser, 0.5)
    element(browser, "use-slider").click()
    element(browser, "video-input").send_keys(str(tiny_video))
    wait(browser, lambda b: element(b, "video-state").get_attribute("data-state") == "done", "the job did not end")
    wait(browser, lambda b: b.execute_script(
        "const f = [...document.querySelectorAll('#gallery img')];"
        "return f.length > 0 && f.every(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0);"),
        "the defect frames did not load with the token")
