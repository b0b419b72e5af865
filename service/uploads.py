"""Uploads decoded by their content, never by their name or content type, within size limits.

Images: PIL reads only the header to get the dimensions (lazy), so an image claiming more pixels than
`--max_pixels` is refused (413) before anything is decoded; then OpenCV decodes the bytes (BGR uint8).
Zip archives are read in memory, member by member (never extracted to disk), within limits on the member count,
each member's size and the total uncompressed size, counted on the bytes actually inflated, not on what the
archive declares (a zip bomb is refused with 413). Videos are written into their job's folder and decoded by
OpenCV (`video_io.probe_video`).
"""
from __future__ import annotations

import io
import math
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import PIL.Image

import video_io
from service.http_errors import ApiError

CHUNK_BYTES = 1024 * 1024
MAX_ARCHIVE_MEMBERS = 500  # files in one zip (directories are skipped, not counted)
ARCHIVE_TOTAL_FACTOR = 4  # a zip may inflate to this many times --max_upload_mb in all
IMAGE_FORMATS = "PNG, JPEG, BMP, TIFF or WebP"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")

# PIL warns (DecompressionBombWarning) when it opens a header of more than ~89 Mpx. Here only the header is read,
# the size is checked against --max_pixels and OpenCV decodes: the warning says nothing, once per process. (Set at
# import: warnings.catch_warnings around each open would not be thread-safe.)
warnings.filterwarnings("ignore", category=PIL.Image.DecompressionBombWarning)


def read_upload(stream: BinaryIO, name: str, limit: int) -> bytes:
    """An uploaded file's bytes, read in chunks and stopped (413) as soon as it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"{name}: larger than the {_mb(limit)} upload limit; send a smaller file or start "
                                "the service with a larger --max_upload_mb")
        chunks.append(chunk)
    return b"".join(chunks)


def image_size(data: bytes) -> tuple[float, float] | None:
    """(width, height) from an image's header (PIL reads no pixels), or None when the bytes are no image."""
    # PIL raises above twice its own limit (~179 Mpx); the caller compares the size with --max_pixels either way.
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            return image.size
    except PIL.Image.DecompressionBombError:
        return math.inf, math.inf  # beyond PIL's own limit: more than any --max_pixels allows
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def decode_image(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """An uploaded image as BGR uint8: empty -> 400, not an image -> 415, more than max_pixels -> 413 (checked
    on the header, before decoding), undecodable (corrupt, truncated) -> 400."""
    if not data:
        raise ApiError(400, f"{name}: empty file; send an image ({IMAGE_FORMATS})")
    size = image_size(data)
    if size is None:
        raise ApiError(415, f"{name}: not an image; send a {IMAGE_FORMATS} file")
    check_pixels(name, *size, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ApiError(400, f"{name}: the image could not be decoded (corrupt or truncated); send it again or "
                            f"re-save it as PNG")
    return image


def check_pixels(name: str, width: float, height: float, max_pixels: int) -> None:
    """413 when an image or frame has more than max_pixels pixels."""
    if width * height > max_pixels:
        shown = "more than PIL's limit" if math.isinf(width) else f"{int(width)}x{int(height)}"
        raise ApiError(413, f"{name}: {shown} pixels is more than --max_pixels {max_pixels}; send a smaller image")


def is_zip(data: bytes) -> bool:
    """True when the bytes are a zip archive (by content)."""
    return zipfile.is_zipfile(io.BytesIO(data))


def archive_members(data: bytes, name: str, member_limit: int) -> Iterator[tuple[str, bytes]]:
    """(name inside the archive, bytes) of every file of a zip held in memory, one at a time, in archive order;
    directories are skipped. 400 for an unreadable archive or member; 413 for more than MAX_ARCHIVE_MEMBERS files,
    a member inflating beyond member_limit bytes or all inflating beyond ARCHIVE_TOTAL_FACTOR x member_limit."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as err:
        raise ApiError(400, f"{name}: not a readable zip archive ({err}); re-create it") from None
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if not members:
            raise ApiError(400, f"{name}: the zip archive holds no files; put the images in it")
        if len(members) > MAX_ARCHIVE_MEMBERS:
            raise ApiError(413, f"{name}: {len(members)} files in the archive, more than {MAX_ARCHIVE_MEMBERS}; "
                                "send them in several batches")
        total_limit = ARCHIVE_TOTAL_FACTOR * member_limit
        total = 0
        for info in members:
            payload = _inflate(archive, info, name, member_limit)
            total += len(payload)
            if total > total_limit:
                raise ApiError(413, f"{name}: inflates to more than {_mb(total_limit)}; send fewer images at once")
            yield info.filename, payload


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limit: int) -> bytes:
    """One member's bytes, inflated at most to limit + 1 bytes whatever its header declares."""
    where = f"{name}: {info.filename}"
    if info.file_size > limit:
        raise ApiError(413, f"{where}: inflates to {_mb(info.file_size)}, more than the {_mb(limit)} limit per file")
    try:
        with archive.open(info) as member:
            payload = member.read(limit + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError, ValueError) as err:
        raise ApiError(400, f"{where}: cannot be read from the archive ({err}); re-create the zip without "
                            "encryption") from None
    if len(payload) > limit:
        raise ApiError(413, f"{where}: inflates to more than the {_mb(limit)} limit per file (a zip bomb?)")
    return payload


def save_video(data: bytes, name: str, folder: Path, max_pixels: int) -> tuple[Path, video_io.VideoInfo]:
    """Writes an uploaded video into folder (input<suffix>, the suffix kept only when it is a video one) and
    checks it by decoding with OpenCV: empty -> 400, an image or undecodable -> 415, frames beyond max_pixels ->
    413."""
    if not data:
        raise ApiError(400, f"{name}: empty file; send a video (e.g. MP4)")
    if image_size(data) is not None:
        raise ApiError(415, f"{name}: an image, not a video; send images to /api/test_image")
    suffix = Path(name).suffix.lower()
    path = folder / f"input{suffix if suffix in VIDEO_SUFFIXES else '.bin'}"
    path.write_bytes(data)
    try:
        info = video_io.probe_video(path)
    except video_io.VideoError:
        raise ApiError(415, f"{name}: not a video OpenCV can decode; send an MP4 (H.264 or MPEG-4)") from None
    check_pixels(name, info.width, info.height, max_pixels)
    return path, info


def _mb(size: float) -> str:
    """A byte count in MB for messages."""
    return f"{size / (1024 * 1024):.3g} MB"
