"""The settings tables of README.md and docs/tls.md, generated from the declarations in
shared/config.py: ``python -m harness.docs`` (``make docs``) writes them between their markers,
and a unit test fails while a page holds anything else."""

from __future__ import annotations

import sys
from pathlib import Path

from shared.config import CATALOG, SETTINGS, ApplierConfig, ExtractorConfig
from shared.settings import README, Setting

ROOT = Path(__file__).resolve().parents[1]
PAGES = (README, "docs/tls.md")
BEGIN = (
    "<!-- settings table: generated from shared/config.py by `make docs`; "
    "edit the declarations there, not this table -->"
)
END = "<!-- end of settings table -->"
# A required setting's default column says which process needs it, if not both.
PROCESSES = {"extractor": ExtractorConfig, "applier": ApplierConfig}


def table(page: str) -> str:
    """The markdown that goes between the page's markers."""
    lines = ["| setting | variable | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [
        f"| `{s.path}` | `{s.env}` | {_default(s)} | {s.doc} |" for s in SETTINGS if s.page == page
    ]
    if page == README:
        lines += [
            "",
            "What each command needs (the settings without a default that it reads):",
            "",
            "| command | needs |",
            "| --- | --- |",
        ]
        for kind in CATALOG.kinds:
            needs = ", ".join(f"`{s.path}`" for s in CATALOG.needs(kind) if s.required)
            commands = ", ".join(f"`{c}`" for c in kind.COMMANDS)
            lines.append(f"| {commands} | {needs} |")
    return "\n".join(lines)


def _default(s: Setting) -> str:
    if not s.required:
        return s.shown_default()
    needing = [name for name, kind in PROCESSES.items() if s in CATALOG.needs(kind)]
    if len(needing) == len(PROCESSES):
        return "required"
    return f"required ({', '.join(needing) or 'see below'})"


def rewrite(text: str, page: str) -> str:
    """The page's text with its settings table as the declarations say it."""
    head, begin, rest = text.partition(BEGIN)
    _old, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{page} has no settings table markers ({BEGIN} ... {END})")
    return f"{head}{BEGIN}\n{table(page)}\n{END}{tail}"


def main() -> int:
    for page in PAGES:
        path = ROOT / page
        text = path.read_text()
        new = rewrite(text, page)
        if new != text:
            path.write_text(new)
            print(f"{page}: settings table written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
