"""Uploaded images: a byte limit while the body streams in, then the same file
path into the same decoder as `svertka predict` (``train.evaluate.load_image``,
which checks the pixel count in the header before decoding: a decompression
bomb is refused, not decoded)."""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from starlette.exceptions import HTTPException

from ..data.formats import MAX_IMAGE_PIXELS

MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # a phone's JPEG fits; the model sees at most a few hundred px anyway

LIMITS = {"upload_bytes": MAX_UPLOAD_BYTES, "image_pixels": MAX_IMAGE_PIXELS}


async def read_upload(request) -> bytes:
    """The request body, refused with 413 as soon as it passes MAX_UPLOAD_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, too_big(int(declared)))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, too_big(len(body), "at least "))
    if not body:
        raise HTTPException(400, "empty upload; send a PNG or JPEG image as the request body")
    return bytes(body)


def too_big(size: int, prefix: str = "") -> str:
    return (f"upload of {prefix}{size:,} bytes is over the {MAX_UPLOAD_BYTES // 2**20} MiB limit; "
            f"send a smaller image")


@contextlib.contextmanager
def upload_file(data: bytes):
    """The upload as a temporary file (the decoders take paths), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="svertka-upload-") as d:
        path = Path(d) / "upload"
        path.write_bytes(data)
        yield path


def upload_message(message: str, path: Path) -> str:
    """A decoder's message about the temporary file, told about "the upload" instead."""
    return message.replace(str(path), "the upload").replace(", or remove the file", "")
