"""A strict little DOM for the waterfall tests, built with the standard library's html.parser."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())


class Node:
    """An element: tag, attributes, children (nodes and text)."""

    def __init__(self, tag: str, attrs: list[tuple[str, str | None]], parent: Node | None):
        self.tag = tag
        self.attrs = {name: value or "" for name, value in attrs}
        self.parent = parent
        self.children: list[Any] = []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(child if isinstance(child, str) else child.text() for child in self.children)

    def iter(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find(self, css_class: str) -> Node:
        """The first descendant with this class (there must be one)."""
        for node in self.iter():
            if css_class in node.classes:
                return node
        raise AssertionError(f"no .{css_class} under <{self.tag}>")

    def child_tag(self, tag: str) -> Node:
        return next(c for c in self.children if isinstance(c, Node) and c.tag == tag)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", [], None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, attrs, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Node(tag, attrs, self.current))

    def handle_endtag(self, tag: str) -> None:
        assert self.current.tag == tag, f"</{tag}> closes <{self.current.tag}>"
        assert self.current.parent is not None
        self.current = self.current.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(markup: str) -> Node:
    """Parse ``markup``; every element must be closed in order (it is a well-formed fragment)."""
    builder = _Builder()
    builder.feed(markup)
    builder.close()
    assert builder.current is builder.root, f"<{builder.current.tag}> is never closed"
    return builder.root


def rows(document: Node) -> list[Node]:
    """The waterfall's rows (spans and sub-runs), in document order."""
    return [node for node in document.iter() if "data-span-id" in node.attrs]


def row_tree(document: Node) -> list[dict[str, Any]]:
    """The rows as nested dicts (name, kind, status, children) rebuilt from their depths."""
    forest: list[dict[str, Any]] = []
    stack: list[tuple[int, list[dict[str, Any]]]] = [(-1, forest)]
    for row in rows(document):
        depth = int(row.attrs["data-depth"])
        while stack[-1][0] >= depth:
            stack.pop()
        assert stack[-1][0] == depth - 1, "a row is indented more than one level below the previous one"
        node = {
            "name": row.find("tr-label").text(),
            "kind": row.attrs["data-kind"],
            "status": row.attrs["data-status"],
            "children": [],
        }
        stack[-1][1].append(node)
        stack.append((depth, node["children"]))
    return forest


def external_references(document: Node) -> list[str]:
    """Anything that would load or run something from outside the fragment."""
    found = []
    for node in document.iter():
        if node.tag in (
            "script",
            "link",
            "img",
            "iframe",
            "object",
            "embed",
            "audio",
            "video",
            "source",
            "base",
        ):
            found.append(f"<{node.tag}>")
        for name, value in node.attrs.items():
            if name in ("src", "srcset", "action", "formaction", "data") or name.startswith("on"):
                found.append(f"{node.tag}[{name}]")
            if name == "href" and not value.startswith("#"):
                found.append(f"href={value}")
            if name == "style" and ("url(" in value or "expression(" in value):
                found.append(f"style={value}")
        if node.tag == "style":
            css = node.text()
            found.extend(
                marker for marker in ("url(", "@import", "http:", "https:", "@font-face") if marker in css
            )
    return found
