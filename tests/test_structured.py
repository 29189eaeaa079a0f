"""Structured-output parsing and repair."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from glan_utils.llm.structured import ParseError, parse


class Item(BaseModel):
    name: str
    tags: list[str]


@pytest.mark.parametrize(
    ("text", "repaired"),
    [
        ('{"name": "a", "tags": ["x"]}', False),
        ('Sure! Here it is:\n```json\n{"name": "a", "tags": ["x"]}\n```\nHope that helps.', True),
        ('The answer is {"name": "a", "tags": ["x"]} as requested.', True),
        ("{'name': 'a', 'tags': ['x'],}", True),
        ('{"name": "a", "tags": ["x"', True),
    ],
)
def test_parse_and_repair(text, repaired):
    item, was_repaired = parse(text, Item)
    assert item == Item(name="a", tags=["x"]) and was_repaired is repaired


@pytest.mark.parametrize("text", ["no json at all", '{"name": "a"}', '{"tags": "not a list"}'])
def test_unrepairable_raises_with_reason(text):
    with pytest.raises(ParseError):
        parse(text, Item)
