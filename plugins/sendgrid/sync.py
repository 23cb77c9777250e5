"""The suppression reconcile: SendGrid's suppression lists, read on the sync schedule.

Each stream is one of SendGrid's lists (``/v3/suppression/<list>``, paged by ``offset``) and
is always read whole (the lists have no change feed; a full pass is a few requests), so every
batch says ``full`` and the hub tombstones what left the list. When a list has been read to
its end, the plugin's suppression list is made to match it: addresses SendGrid lists are
added (source ``sendgrid:<list>``), and those it added earlier from that list and SendGrid no
longer has are removed. Suppressions learnt from events are left as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from hub.model import Batch, Stream

from .client import SUPPRESSION_LISTS, SendGridClient
from .mailer import Mailer
from .message import normalise

STREAMS = tuple(
    Stream(
        name,
        key="email",
        columns={"created": "created", "reason": "reason"},
        description=f"SendGrid's {name.replace('_', ' ')} suppression list",
    )
    for name in SUPPRESSION_LISTS
)


async def reconcile(
    client: SendGridClient | None, mailer: Mailer, streams: Sequence[str]
) -> AsyncIterator[Batch]:
    """Read each list in ``streams``, yield its pages, then align the suppression list
    (no client, SMTP only: nothing)."""
    if client is None:
        return
    for stream in streams:
        entries: dict[str, str] = {}
        empty = True
        async for page in client.suppressions(stream):
            for row in page:
                entries[normalise(str(row["email"]))] = str(row.get("reason") or stream)
            yield Batch(stream, page, full=True)
            empty = False
        if empty:
            yield Batch(stream, [], full=True)  # an emptied list still tombstones its records
        await mailer.replace_source(f"sendgrid:{stream}", entries)
