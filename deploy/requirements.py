"""Print one of pyproject.toml's package lists, one requirement per line.

Used by the Makefile to build the LLM runtime environment from the same pins
the package declares: ``extra NAME`` prints an optional-dependency list, and
``llm-no-deps`` / ``llm-remove`` print the ``[tool.kairos]`` lists.
"""

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def main(argv: list[str]) -> int:
    project = tomllib.loads(PYPROJECT.read_text())
    if argv[:1] == ["extra"] and len(argv) == 2:
        names = project["project"]["optional-dependencies"][argv[1]]
    elif len(argv) == 1:
        names = project["tool"]["kairos"][argv[0]]
    else:
        print("usage: requirements.py extra NAME | LIST", file=sys.stderr)
        return 2
    print("\n".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
