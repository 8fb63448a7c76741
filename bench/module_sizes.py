"""Lines per module of gradcheck/ and plugin/, largest first; those over the 600-line limit marked.

    python bench/module_sizes.py
"""

from pathlib import Path

LIMIT = 600  # the project's limit for a module in gradcheck/ or plugin/


def sizes(root: Path) -> list[tuple[int, str]]:
    """(lines, path) of every module, largest first."""
    files = sorted((root / "gradcheck").glob("*.py")) + sorted((root / "plugin").glob("*.py"))
    return sorted(((len(p.read_text().splitlines()), str(p.relative_to(root))) for p in files),
                  reverse=True)


if __name__ == "__main__":
    for lines, path in sizes(Path(__file__).resolve().parents[1]):
        print(f"{lines:6d}  {path}{'  (over the limit)' if lines > LIMIT else ''}")
