"""What of a document is sent to the model: its text (plain text, CSV, a PDF's text layer), or
the image itself for a vision model.

A document the hub cannot turn into input is an :class:`Unreadable` with the reason: a PDF
without a text layer (a scan), an encrypted or broken PDF, an image without a configured
vision model, a type it does not read (zip, Office files). ``pypdf`` is imported here, when a
PDF is read, and runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import io
from dataclasses import dataclass

from .settings import OpenAISettings

TEXT_TYPES = frozenset({"text/plain", "text/csv", "application/json"})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class Unreadable(Exception):
    """The document cannot be given to the model; the message says why."""


@dataclass(frozen=True)
class Content:
    """A document as model input: ``text``, or an ``image`` data URL (vision)."""

    text: str = ""
    image: str | None = None
    truncated: bool = False
    """The text was longer than ``max_input_chars`` and was cut off."""
    pages: int | None = None
    """The PDF's pages (None for other types)."""


def _bounded(text: str, pages: int | None, settings: OpenAISettings) -> Content:
    text = text.replace("\x00", "").strip()
    limit = settings.max_input_chars
    return Content(text=text[:limit], truncated=len(text) > limit, pages=pages)


def _pdf_text(data: bytes, max_pages: int) -> tuple[str, int]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("the PDF is encrypted with a password")
        pages = reader.pages
        text = "\n\n".join(page.extract_text() or "" for page in pages[:max_pages])
        return text, len(pages)
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise Unreadable(f"not a readable PDF ({type(exc).__name__})") from None


async def content_of(data: bytes, content_type: str, settings: OpenAISettings) -> Content:
    """The model input of a document of ``content_type`` with bytes ``data``.

    :raise Unreadable: the document has no text the hub can read, or is an image and no
        ``vision_model`` is configured.
    """
    kind = content_type.split(";")[0].strip().lower()
    if kind in TEXT_TYPES or kind.startswith("text/"):
        return _bounded(data.decode("utf-8", "replace"), None, settings)
    if kind == "application/pdf":
        text, pages = await asyncio.to_thread(_pdf_text, data, settings.max_pdf_pages)
        if not text.strip():
            raise Unreadable(
                f"no text: the PDF ({pages} pages) has no text layer (a scan?); "
                "run it through OCR, or upload the pages as images for a vision model"
            )
        return _bounded(text, pages, settings)
    if kind in IMAGE_TYPES:
        if settings.vision_model is None:
            raise Unreadable(f"{kind} is an image and no vision_model is configured")
        encoded = base64.b64encode(data).decode("ascii")
        return Content(image=f"data:{kind};base64,{encoded}")
    raise Unreadable(f"documents of type {kind} are not analysed (text, CSV, PDF or images)")
