"""Export every contract's JSON Schema and the subject catalog to libs/contracts/schemas/.

Run `make contracts` (or `python -m agentbus.contracts.export`) after changing a model; the contract
tests fail until the checked-in files match the code, so every schema change is reviewed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .base import Contract, ErrorReply
from .catalog import SUBJECTS, all_models
from .streams import BUCKETS, CONSUMERS, STREAMS

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "schemas"


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def render() -> dict[str, str]:
    """File name -> content for everything that belongs in the schemas directory."""
    models: tuple[type[Contract], ...] = (*all_models(), ErrorReply)
    files = {f"{m.__name__}.json": _dump(m.model_json_schema()) for m in models}
    catalog = {
        "subjects": [
            {
                "subject": spec.subject,
                "kind": spec.kind,
                "stream": spec.stream,
                "queue_group": spec.queue_group,
                "producers": list(spec.producers),
                "consumers": list(spec.consumers),
                "payloads": [m.__name__ for m in spec.payloads],
                "reply": spec.reply.__name__ if spec.reply else None,
                "description": spec.description,
            }
            for spec in SUBJECTS
        ],
        "streams": [vars(x) | {"subjects": list(x.subjects)} for x in STREAMS],
        "consumers": [vars(x) | {"nak_delays_s": list(x.nak_delays_s)} for x in CONSUMERS],
        "buckets": [vars(x) | {"users": list(x.users)} for x in BUCKETS],
    }
    files["catalog.json"] = _dump(catalog)
    return files


def write(directory: Path = DEFAULT_DIR) -> list[str]:
    """Write the files; remove stale ones. Returns the names that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = render()
    changed = []
    for stale in directory.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
            changed.append(stale.name)
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(name)
    return changed


def diff(directory: Path = DEFAULT_DIR) -> list[str]:
    """Names of files that are missing, stale or different from the code."""
    wanted = render()
    present = (
        {p.name: p.read_text() for p in directory.glob("*.json")} if directory.exists() else {}
    )
    return sorted(
        {n for n, t in wanted.items() if present.get(n) != t} | (present.keys() - wanted.keys())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = diff(args.dir)
        for name in stale:
            print(f"stale schema: {name}", file=sys.stderr)
        return 1 if stale else 0
    for name in write(args.dir):
        print(f"wrote {args.dir / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
