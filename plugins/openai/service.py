"""What runs for one hub while the integration is configured: the API client, the month's
budget and the analysis queue (:mod:`.runtime` creates it at ``startup``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from . import results
from .analysis import Analysis
from .client import Answer, OpenAIApi
from .sync import AnalysisQueue, Job
from .usage import Budget, Call, record

if TYPE_CHECKING:
    import pydantic

    from hub.api import HubAPI

    from .extract import Content
    from .settings import OpenAISettings


class Runtime:
    """What runs for one hub."""

    def __init__(self, hub: HubAPI, settings: OpenAISettings) -> None:
        self.hub = hub
        self.settings = settings
        self.api = OpenAIApi(settings, asyncio.sleep)
        self.budget = Budget()
        self.analysis = Analysis(self)
        self.queue = AnalysisQueue(settings.concurrency, settings.queue_size, self.analysis.run)

    async def ask(
        self,
        purpose: str,
        subject: str,
        model: str,
        instructions: str,
        content: Content,
        schema: type[pydantic.BaseModel],
        input_bound: int,
    ) -> Answer:
        """One structured call within the plan's budget, its usage recorded.

        :param purpose: what it is for (``analysis``, ``insights``), recorded with its usage.
        :param subject: the document or client it is about.
        :param input_bound: the most input tokens the call can count (the budget's worst case).
        :raise plugins.openai.usage.BudgetExceeded: the worst case does not fit the plan.
        :raise hub.errors.ProviderError: the call failed.
        """
        async with self.budget.reserve(self.hub, self.settings, model, input_bound):
            answer = await self.api.structured(model, instructions, content, schema)
            outcome = "ok" if answer.parsed is not None else "nonconforming"
            call = Call(purpose, subject, model, answer.tokens, answer.request_id, outcome)
            await record(self.hub, self.settings, call, answer.rate_limits)
        return answer

    async def start_analysis(
        self, document_id: str, client: str, name: str, kind: str | None, trigger: str
    ) -> str:
        """Record and queue an analysis of a known document; its id.

        :raise plugins.openai.sync.AlreadyRunning: the document's analysis is under way.
        :raise plugins.openai.sync.QueueFull: no place in the queue.
        """
        self.queue.check(document_id)
        analysis_id = results.new_id()
        await results.save(
            self.hub,
            {
                "id": analysis_id,
                "document_id": document_id,
                "client": client,
                "document_name": name,
                "document_type": kind or "pending",
                "trigger": trigger,
                "state": "queued",
                "started_at": results.now(),
            },
        )
        self.queue.submit(Job(analysis_id, document_id, kind, trigger))
        return analysis_id

    async def start_upload_analysis(self, document_id: str) -> None:
        """Queue the analysis of an uploaded document, unless its upload already did."""
        if self.queue.busy(document_id) or await results.has_upload_analysis(self.hub, document_id):
            return
        document = await self.hub.read_document(document_id, 0)
        if document is not None:
            await self.start_analysis(document.id, document.client, document.name, None, "upload")

    async def close(self) -> None:
        """Cancel queued and running analyses, close the API client."""
        await self.queue.stop()
        await self.api.close()
