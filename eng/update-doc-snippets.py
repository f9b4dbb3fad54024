#!/usr/bin/env python3
"""Copies each snippet of docs/snippets into the pages that show it.

A page marks a block with a line `<!-- snippet: NAME -->` followed by a ```csharp block; the block is replaced by the
code between `// begin-snippet: NAME` and `// end-snippet` in docs/snippets/**/*.cs (dedented), or by the whole of
docs/snippets/QuickStart/Program.cs for NAME "quickstart". DocumentationSnippetTests checks the same thing.
Usage: python3 eng/update-doc-snippets.py
"""
import pathlib, re, textwrap

root = pathlib.Path(__file__).resolve().parent.parent
snippets = {"quickstart": (root / "docs/snippets/QuickStart/Program.cs").read_text().rstrip("\n")}
for source in (root / "docs/snippets").rglob("*.cs"):
    if "/obj/" in str(source) or "/bin/" in str(source):
        continue
    for m in re.finditer(r"^[ \t]*// begin-snippet: (\S+)\n(.*?)^[ \t]*// end-snippet", source.read_text(), re.S | re.M):
        snippets[m.group(1)] = textwrap.dedent(m.group(2)).rstrip("\n")

pattern = re.compile(r"(<!-- snippet: (\S+) -->\n```csharp\n)(.*?)(\n```)", re.S)
for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
    text = page.read_text()
    updated = pattern.sub(lambda m: m.group(1) + snippets[m.group(2)] + m.group(4), text)
    if updated != text:
        page.write_text(updated)
        print(f"updated {page.relative_to(root)}")
