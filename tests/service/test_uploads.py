"""Uploads decoded by content within limits: images (header checked first), zip archives in memory, videos."""
from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
import pytest

from service.http_errors import ApiError
from service.uploads import (MAX_ARCHIVE_MEMBERS, archive_members, decode_image, image_size, is_zip, read_upload,
                             save_video)
from tests.service.test_app import png_bytes, png_header, zip_bytes


def status_of(call) -> tuple[int, str]:
    """(status, message) of the ApiError a call raises."""
    with pytest.raises(ApiError) as error:
        call()
    return error.value.status, str(error.value)


def test_images_decode_by_content_whatever_their_name():
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    for encoded in (png_bytes(image), cv2.imencode(".bmp", image)[1].tobytes()):
        decoded = decode_image(encoded, "photo.jpg", 10_000)
        assert np.array_equal(decoded, image)
    gray = decode_image(png_bytes(image[:, :, 0]), "g.png", 10_000)
    assert gray.shape == (30, 40, 3)  # grey uploads are scored as BGR
    assert image_size(png_bytes(image)) == (40, 30) and image_size(b"text") is None


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_images_are_refused_before_decoding():
    assert status_of(lambda: decode_image(b"", "e.png", 100))[0] == 400
    assert status_of(lambda: decode_image(b"GIF89a-not-really", "t.png", 100))[0] == 415
    assert status_of(lambda: decode_image(png_header(200, 100), "h.png", 19_999)) == (
        413, "h.png: 200x100 pixels is more than --max_pixels 19999; send a smaller image")
    status, message = status_of(lambda: decode_image(png_header(20_000, 20_000), "bomb.png", 10**12))
    assert status == 413 and "more than PIL's limit" in message  # PIL itself refuses 400 Mpx headers
    good = png_bytes(np.zeros((40, 40, 3), np.uint8) + 128)
    assert status_of(lambda: decode_image(good[:60], "cut.png", 10_000))[0] == 400


def test_read_upload_stops_at_the_limit():
    assert read_upload(io.BytesIO(b"x" * 100), "f", 100) == b"x" * 100
    status, message = status_of(lambda: read_upload(io.BytesIO(b"x" * 101), "f.png", 100))
    assert status == 413 and message.startswith("f.png: larger than")


def test_archive_members_skip_folders_and_keep_order():
    data = zip_bytes({"a/": b"", "a/1.png": b"one", "b.txt": b"two"})
    assert is_zip(data) and not is_zip(b"PK\x03\x04 but not a zip")
    assert list(archive_members(data, "z.zip", 100)) == [("a/1.png", b"one"), ("b.txt", b"two")]


def test_archive_limits_count_inflated_bytes_not_declared_ones():
    assert status_of(lambda: list(archive_members(zip_bytes({"big": bytes(101)}), "z.zip", 100)))[0] == 413
    many = zip_bytes({f"{i}": b"" for i in range(MAX_ARCHIVE_MEMBERS + 1)})
    assert status_of(lambda: list(archive_members(many, "m.zip", 100)))[0] == 413
    total = zip_bytes({f"{i}": bytes(90) for i in range(5)})  # 450 > 4 x 100
    assert status_of(lambda: list(archive_members(total, "t.zip", 100)))[0] == 413
    # a member whose header understates its size: inflating stops at the limit anyway
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("liar", bytes(1000))
    forged = bytearray(buffer.getvalue())
    for offset, signature in ((0, b"PK\x03\x04"), (forged.rfind(b"PK\x01\x02"), b"PK\x01\x02")):
        assert forged[offset:offset + 4] == signature
        size_at = offset + (22 if signature == b"PK\x03\x04" else 24)
        forged[size_at:size_at + 4] = (10).to_bytes(4, "little")  # declares 10 bytes
    status, message = status_of(lambda: list(archive_members(bytes(forged), "f.zip", 100)))
    assert status in (400, 413) and "f.zip: liar" in message
    assert status_of(lambda: list(archive_members(b"PK\x05\x06" + bytes(18), "e.zip", 100))) == (
        400, "e.zip: the zip archive holds no files; put the images in it")


def test_save_video_checks_by_decoding(tiny_video, tmp_path):
    path, info = save_video(tiny_video.read_bytes(), "clip.MP4", tmp_path, 10_000)
    assert path == tmp_path / "input.mp4" and (info.width, info.height, info.frame_count) == (64, 64, 12)
    other = tmp_path / "other"
    other.mkdir()
    path, _ = save_video(tiny_video.read_bytes(), "../../evil.sh", other, 10_000)
    assert path == other / "input.bin" and not (tmp_path.parent / "evil.sh").exists()  # the name picks no path
    assert status_of(lambda: save_video(tiny_video.read_bytes(), "v.mp4", tmp_path, 64 * 64 - 1))[0] == 413
    assert status_of(lambda: save_video(b"", "v.mp4", tmp_path, 10_000))[0] == 400
    assert status_of(lambda: save_video(b"\x00" * 500, "v.mp4", tmp_path, 10_000))[0] == 415
