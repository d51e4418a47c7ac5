"""Reports: a page model rendered to HTML and a Markdown twin, plus the plots they show."""

from .page import Page, Section, Table, write_page

__all__ = ["Page", "Section", "Table", "write_page"]
