"""Print the catalog as Markdown: ``python -m schemas.rules > docs/RULES.md``."""

from schemas.rules import catalog_markdown

print(catalog_markdown(), end="")
