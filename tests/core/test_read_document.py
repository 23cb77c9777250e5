"""``hub.read_document``: the first plugin that stores the document answers; a wrong kind of
answer is a contract error, not a document."""

from __future__ import annotations

import pytest

from hub import hookimpl
from hub.errors import PluginContractError
from hub.model import StoredDocument

DOC = StoredDocument("doc_1", "acme", "a.txt", "text/plain", 2, "ab", content=b"hi")


class Store:
    """A plugin storing the documents it is given."""

    def __init__(self, name: str, documents: dict[str, object]) -> None:
        self.__name__ = name
        self.documents = documents
        self.asked: list[tuple[str, int]] = []

    @hookimpl
    def read_document(self, document_id: str, max_bytes: int) -> object:
        self.asked.append((document_id, max_bytes))
        return self.documents.get(document_id)


async def test_the_plugin_that_knows_the_document_answers(make_hub):
    other = StoredDocument("doc_2", "bolt", "b.txt", "text/plain", 20, "cd")
    first, second = Store("first", {"doc_1": DOC}), Store("second", {"doc_2": other})
    hub = await make_hub(plugins=[first, second], builtins=())
    assert await hub.api.read_document("doc_1", 10) == DOC
    assert await hub.api.read_document("doc_2", 10) == other
    assert ("doc_2", 10) in second.asked
    assert await hub.api.read_document("doc_3", 10) is None


async def test_an_answer_that_is_not_a_document_is_a_contract_error(make_hub):
    hub = await make_hub(plugins=[Store("odd", {"doc_1": {"id": "doc_1"}})], builtins=())
    with pytest.raises(PluginContractError, match="odd: read_document"):
        await hub.api.read_document("doc_1", 10)
