"""One document's analysis: read it through the hub, turn it into model input, check the
plan's budget, ask for the structured answer of its type, check the figures, store the result
and emit ``document.analyzed`` -- or store the failure and emit ``document.analysis_failed``
with the reason. Nothing the model says is stored unless it validated against the schema.

The document type is the one asked for, else guessed from the file name
(:func:`guess_type`), else ``generic``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from hub.errors import AuthenticationError, HubError, ProviderError, error_class_of

from . import figures, results, webhooks
from .extract import Content, Unreadable, content_of
from .schemas import SCHEMAS, Answer
from .settings import DOCUMENT_TYPES, NAME, DocumentType

if TYPE_CHECKING:
    from hub.api import HubAPI
    from hub.model import StoredDocument

    from .service import Runtime
    from .sync import Job

log = structlog.get_logger("plugins.openai")
MESSAGE_OVERHEAD_TOKENS = 64
"""Tokens the request's framing (roles, message separators) may add to its text."""
LOW_CONFIDENCE = 0.5
NAME_HINTS: tuple[tuple[DocumentType, tuple[str, ...]], ...] = (
    ("tax_return", ("tax return", "1040", "1120", "1065", "tax_return", "taxreturn")),
    ("bank_statement", ("bank", "account statement")),
    ("financial_statement", ("balance sheet", "income statement", "profit", "p&l", "financial")),
    ("invoice", ("invoice", "bill")),
    ("receipt", ("receipt",)),
)
INSTRUCTIONS = (
    "You read documents for an accounting firm. The document is a {label}: {description} "
    "Fill in every field of the answer from the document only; use null for what it does not "
    "show and never invent or compute a figure it does not print. Write amounts as decimal "
    'strings with a dot and no thousands separators or currency symbols ("1234.50"), dates '
    "as YYYY-MM-DD and currencies as ISO codes. summary: two or three sentences; confidence: "
    "0 to 1, how sure you are of the figures; recommendations: what the accountant should "
    "check or do."
)


class Failed(HubError):
    """The analysis cannot complete; ``error_class`` says which kind of failure."""

    def __init__(self, message: str, error_class: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def guess_type(name: str) -> DocumentType:
    """The document type a file name suggests (``generic`` when it suggests none)."""
    words = re.sub(r"[_\-.]+", " ", name.lower())
    for kind, hints in NAME_HINTS:
        if any(hint.replace("_", " ") in words for hint in hints):
            return kind
    return "generic"


def document_type(asked: str | None, name: str) -> DocumentType:
    """The type to analyse a document as: ``asked`` if valid, else guessed from ``name``."""
    for kind in DOCUMENT_TYPES:
        if asked == kind:
            return kind
    return guess_type(name)


def instructions_for(kind: DocumentType) -> str:
    """The instructions of an analysis of ``kind``."""
    schema = SCHEMAS[kind]
    description = " ".join((schema.__doc__ or "").split())
    return INSTRUCTIONS.format(label=kind.replace("_", " "), description=description)


def input_bound(instructions: str, content: Content, kind: DocumentType, image_tokens: int) -> int:
    """The most input tokens the call can count: a token is at least one byte of text."""
    schema = orjson.dumps(SCHEMAS[kind].model_json_schema())
    text = len(instructions.encode()) + len(schema) + MESSAGE_OVERHEAD_TOKENS
    return text + (image_tokens if content.image is not None else len(content.text.encode()))


@dataclass(frozen=True)
class Outcome:
    """A validated answer and the flags the hub's checks raised."""

    answer: Answer
    flags: list[figures.Flag]
    model: str


class Analysis:
    """Runs queued analyses for one hub (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.hub: HubAPI = runtime.hub

    async def run(self, job: Job) -> None:
        """Run one queued analysis to its end: analysed or failed, stored and emitted."""
        settings = self.runtime.settings
        await results.update(self.hub, job.analysis_id, {"state": "running"})
        document: StoredDocument | None = None
        kind: DocumentType = "generic"
        try:
            document = await self._document(job.document_id, settings.max_document_bytes)
            kind = document_type(job.kind, document.name)
            await results.update(self.hub, job.analysis_id, {"document_type": kind})
            outcome = await self._analyse(document, kind)
        except HubError as exc:  # Failed, ProviderError, BudgetExceeded
            await self._failed(job, document, kind, exc)
            return
        except Exception as exc:  # a bug must still end the analysis, never leave it running
            log.exception("analysis raised", analysis=job.analysis_id)
            await self._failed(job, document, kind, Failed(f"internal error: {exc!r}", "internal"))
            return
        await self._analyzed(job, document, kind, outcome)

    async def _document(self, document_id: str, max_bytes: int) -> StoredDocument:
        try:
            document = await self.hub.read_document(document_id, max_bytes)
        except ProviderError as exc:
            raise Failed(f"the document cannot be read: {exc}", "storage") from None
        if document is None:
            raise Failed(f"no document {document_id!r}", "not_found")
        if document.content is None:
            raise Failed(
                f"the document has {document.size} bytes, more than max_document_bytes "
                f"({max_bytes}): it is not analysed",
                "too_large",
            )
        return document

    async def _analyse(self, document: StoredDocument, kind: DocumentType) -> Outcome:
        settings = self.runtime.settings
        assert document.content is not None
        try:
            content = await content_of(document.content, document.content_type, settings)
        except Unreadable as exc:
            error_class = "no_text" if str(exc).startswith("no text") else "unreadable"
            raise Failed(str(exc), error_class) from None
        model = settings.vision_model if content.image is not None else None
        model = model or settings.model_for(kind)
        instructions = instructions_for(kind)
        bound = input_bound(instructions, content, kind, settings.image_tokens)
        answer = await self.runtime.ask(
            "analysis", document.id, model, instructions, content, SCHEMAS[kind], bound
        )
        if answer.parsed is None:
            raise Failed(f"{answer.problem} (request {answer.request_id})", "nonconforming")
        assert isinstance(answer.parsed, Answer)
        flags = figures.check(answer.parsed, datetime.now(UTC).date())
        if content.truncated:
            flags.append(
                _note("text_truncated", f"only the first {len(content.text)} characters were read")
            )
        if answer.parsed.confidence < LOW_CONFIDENCE:
            flags.append(
                _note("low_confidence", f"the model's confidence is {answer.parsed.confidence}")
            )
        return Outcome(answer.parsed, flags, model)

    async def _analyzed(
        self, job: Job, document: StoredDocument, kind: DocumentType, outcome: Outcome
    ) -> None:
        answer = outcome.answer
        data = answer.model_dump(mode="json", exclude={"summary", "confidence", "recommendations"})
        await results.update(
            self.hub,
            job.analysis_id,
            {
                "state": "analyzed",
                "model": outcome.model,
                "finished_at": results.now(),
                "confidence": answer.confidence,
                "summary": answer.summary,
                "recommendations": list(answer.recommendations),
                "flags": outcome.flags,
                "data": data,
            },
        )
        log.info("document analysed", document=document.id, type=kind, flags=len(outcome.flags))
        await webhooks.emit_analyzed(
            self.hub,
            _event_data(job, document, kind)
            | {
                "model": outcome.model,
                "summary": answer.summary,
                "confidence": answer.confidence,
                "recommendations": list(answer.recommendations),
                "flags": outcome.flags,
            },
        )

    async def _failed(
        self, job: Job, document: StoredDocument | None, kind: DocumentType, exc: HubError
    ) -> None:
        error_class = error_class_of(exc)
        await results.update(
            self.hub,
            job.analysis_id,
            {
                "state": "failed",
                "finished_at": results.now(),
                "error": str(exc),
                "error_class": error_class,
            },
        )
        log.warning("document analysis failed", document=job.document_id, error_class=error_class)
        if isinstance(exc, AuthenticationError):
            await self.disconnect()
        data = _event_data(job, document, kind) | {"error": str(exc), "error_class": error_class}
        await webhooks.emit_failed(self.hub, data)

    async def disconnect(self) -> None:
        """Re-check the connection's health, which marks it disconnected (the key is refused)."""
        for connection in await self.hub.connections(NAME):
            await self.hub.check_health(connection)


def _note(check: str, message: str) -> figures.Flag:
    return {"check": check, "message": message, "expected": None, "found": None}


def _event_data(job: Job, document: StoredDocument | None, kind: DocumentType) -> dict[str, Any]:
    """What both analysis events carry (the e-mail plugin's document notice reads them)."""
    return {
        "analysis_id": job.analysis_id,
        "document_id": job.document_id,
        "document_name": document.name if document else None,
        "client": document.client if document else None,
        "client_name": document.client if document else None,
        "uploader_email": document.uploaded_by if document else None,
        "type": kind,
        "trigger": job.trigger,
    }
