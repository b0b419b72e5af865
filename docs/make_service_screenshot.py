"""Screenshot of the service's page on a real model: README's picture (docs/images/service_page.png).

Starts `python -m service` on --results_path (127.0.0.1, a free port), opens the page in headless Chromium
(Selenium, the system chromium/chromedriver), loads --model_id, tests --image, runs a batch of --batch images
(optional) and a video job on --video (optional), and saves the whole page as --output.

    python docs/make_service_screenshot.py --results_path results/demo --model_id models/backbone_0/mvtec_brick \
        --image data/mvtec/brick/test/crack/000.png --batch data/mvtec/brick/test/*/00[01].png \
        --output docs/images/service_page.png
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from errors import UserError, run_script
from service import local

WINDOW = (1280, 1000)
WAIT_S = 300.0


def open_browser() -> webdriver.Chrome:
    """Headless Chromium through the system chromedriver."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise UserError("chromium and chromedriver not found; install them (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(argument)
    options.binary_location = chromium
    return webdriver.Chrome(options=options, service=Service(driver))


def wait(browser: webdriver.Chrome, condition, what: str) -> None:
    """Waits until condition(browser) holds; a one-line error naming what did not happen."""
    try:
        WebDriverWait(browser, WAIT_S).until(condition)
    except Exception as err:  # selenium's TimeoutException and friends: reported in one line
        raise UserError(f"{what} (page error: {browser.find_element(By.ID, 'error').text!r})") from err


def session(browser: webdriver.Chrome, url: str, args: argparse.Namespace) -> None:
    """Loads the model, tests the image, runs the batch and the video as a user would."""
    browser.get(f"{url}/")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#models-body tr"), "the models table did not fill")
    rows = [row for row in browser.find_elements(By.CSS_SELECTOR, "#models-body tr") if args.model_id in row.text]
    if not rows:
        raise UserError(f"--model_id {args.model_id}: not listed by the service under {args.results_path}")
    rows[0].find_element(By.CSS_SELECTOR, "button").click()
    wait(browser, lambda b: args.model_id in b.find_element(By.ID, "current-model").text, "the model did not load")
    browser.find_element(By.ID, "image-input").send_keys(str(args.image.resolve()))
    wait(browser, lambda b: b.find_element(By.ID, "overlay-image").get_attribute("src"), "no heatmap appeared")
    if args.batch:
        browser.find_element(By.ID, "batch-input").send_keys("\n".join(str(p.resolve()) for p in args.batch))
        wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#batch-body tr")) >= len(args.batch),
             "the batch table did not fill")
    if args.video:
        browser.find_element(By.ID, "video-input").send_keys(str(args.video.resolve()))
        wait(browser, lambda b: "done" in b.find_element(By.ID, "video-state").text, "the video job did not finish")


def save_page(browser: webdriver.Chrome, output: Path) -> None:
    """The whole page (viewport stretched to its height) as a PNG."""
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": WINDOW[0], "height": height, "deviceScaleFactor": 1, "mobile": False})
    output.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(output))


def main(argv: list[str] | None = None) -> None:
    """Parses the flags, runs the session, writes the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results_path", type=Path, required=True)
    parser.add_argument("--model_id", required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--batch", type=Path, nargs="*", default=[])
    parser.add_argument("--video", type=Path)
    parser.add_argument("--output", type=Path, default=Path("docs/images/service_page.png"))
    args = parser.parse_args(argv)
    for path in [args.image, *args.batch] + ([args.video] if args.video else []):
        if not path.is_file():
            raise UserError(f"{path}: file not found")
    with tempfile.TemporaryDirectory(prefix="service_screenshot_") as scratch:
        process, url = local.start(["--results_path", str(args.results_path), "--jobs_dir", f"{scratch}/jobs"],
                                   Path(scratch) / "service.log")
        try:
            browser = open_browser()
            try:
                session(browser, url, args)
                save_page(browser, args.output)
            finally:
                browser.quit()
        finally:
            local.stop(process)
    print(f"screenshot  {args.output}")


if __name__ == "__main__":
    sys.exit(run_script(main))
