"""A function's source in a fetched release, with the release's line numbers, or a diff of two:

    python -m harness.show QUALNAME VERSION [VERSION2]
    python -m harness.show vllm/model_executor/models/radio.py:RadioModel.load_weights 0.33.0

QUALNAME alone is looked up in the modules the fingerprints and the executed program name.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from harness.extract import Found, locate
from harness.fingerprints import FUNCTIONS
from harness.paths import default_cache
from harness.program import PROGRAM


def get(qualname: str, version: str, cache: Path | None = None) -> Found | None:
    if ":" in qualname:
        module, _, qualname = qualname.rpartition(":")
        modules = [module]
    else:
        modules = dict(FUNCTIONS).get(qualname) or [path for path, _ in PROGRAM]
    src = Path(cache or default_cache()) / "src" / version
    for module in modules:
        path = src / module
        if path.exists():
            found = locate(path.read_text(encoding="utf-8"), qualname, module)
            if found:
                return found
    return None


def main(argv: list[str]) -> int:
    qualname, versions = argv[0], argv[1:]
    if len(versions) == 1:
        f = get(qualname, versions[0])
        if f is None:
            print(f"{qualname}: not found in {versions[0]}", file=sys.stderr)
            return 1
        print(f"# {versions[0]} {f.path}:{f.lineno}-{f.end_lineno}")
        for i, line in enumerate(f.source.splitlines(), f.lineno):
            print(f"{i:5d} {line}")
        return 0
    a, b = get(qualname, versions[0]), get(qualname, versions[1])
    where = [f"{v} {f.path}:{f.lineno}" if f else f"{v} absent" for v, f in zip(versions, (a, b), strict=True)]
    print("# " + "  vs  ".join(where))
    sys.stdout.writelines(difflib.unified_diff((a.source if a else "").splitlines(True), (b.source if b else "").splitlines(True), versions[0], versions[1], n=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
