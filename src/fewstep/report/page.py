"""A tiny page model (sections of text, images and tables) rendered to index.html and index.md side by side."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_write_text


@dataclass
class Table:
    columns: list[str]
    rows: list[list[object]]
    caption: str = ""


@dataclass
class Section:
    title: str
    text: str = ""                                        # plain paragraphs, blank-line separated
    images: list[tuple[str, str]] = field(default_factory=list)   # (relative path, caption)
    tables: list[Table] = field(default_factory=list)


@dataclass
class Page:
    title: str
    intro: str
    sections: list[Section] = field(default_factory=list)
    footer: str = ""


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def to_markdown(page: Page) -> str:
    out = [f"# {page.title}", "", page.intro, ""]
    for s in page.sections:
        out += [f"## {s.title}", "", s.text, ""]
        for path, cap in s.images:
            out += [f"![{cap}]({path})", f"*{cap}*", ""]
        for t in s.tables:
            if t.caption:
                out += [f"**{t.caption}**", ""]
            out += ["| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
            out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in t.rows] + [""]
    if page.footer:
        out += ["---", page.footer]
    return "\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top;text-align:center}
figure img{image-rendering:pixelated;border:1px solid #ccc;max-width:100%}figcaption{font-size:.85em;color:#555}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}caption{font-weight:600;
text-align:left;padding:.3em 0}p{line-height:1.45}footer{margin-top:2em;color:#666;font-size:.85em}"""


def _paras(text: str) -> str:
    return "".join(f"<p>{html.escape(p.strip())}</p>" for p in text.split("\n\n") if p.strip())


def to_html(page: Page) -> str:
    e = html.escape
    body = [f"<h1>{e(page.title)}</h1>", _paras(page.intro)]
    for s in page.sections:
        body += [f"<h2>{e(s.title)}</h2>", _paras(s.text)]
        body += [f'<figure><img src="{e(p)}" alt="{e(c)}"><figcaption>{e(c)}</figcaption></figure>'
                 for p, c in s.images]
        for t in s.tables:
            head = "".join(f"<th>{e(c)}</th>" for c in t.columns)
            rows = "".join("<tr>" + "".join(f"<td>{e(_cell(v))}</td>" for v in r) + "</tr>" for r in t.rows)
            body.append(f"<table><caption>{e(t.caption)}</caption><tr>{head}</tr>{rows}</table>")
    if page.footer:
        body.append(f"<footer>{_paras(page.footer)}</footer>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(page.title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_page(page: Page, folder: str | Path) -> tuple[Path, Path]:
    """Write index.html and index.md into `folder` (atomically); image paths are relative to it."""
    folder = Path(folder)
    return atomic_write_text(folder / "index.html", to_html(page)), atomic_write_text(folder / "index.md",
                                                                                       to_markdown(page))
