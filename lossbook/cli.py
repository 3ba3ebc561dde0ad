"""The ``lossbook`` command line.

    lossbook list [--family softmax]
    lossbook run [CHAPTER ...] [--scale smoke|book|paper] [--seed 0] [--device auto] (--out DIR | --inplace)
    lossbook claims [DIR]
    lossbook provenance [CHAPTER ...] [--backfill [--force]]
    lossbook build
    lossbook api [--write PATH]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from .registry import FAMILIES, loss_table, method_table

# The book's machinery lives in lossbook.lab; it is imported inside the commands that need it, so
# that `lossbook list` (and importing this module) loads the losses only.


def _list(args) -> int:
    import pandas as pd

    losses = loss_table(args.family)
    methods = method_table(args.family)
    where = "" if args.family is None else f" in family {args.family!r}"
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(f"Registered losses{where} ({len(losses)}): loss(input, target, *, weight, ignore_index, reduction, ...)")
        columns = ["loss", "family", "paper", "hyper-parameters", "properties"]
        print(losses[columns].to_string(index=False) if len(losses) else "  (none)")
        print()
        print(f"Heads, layers, transforms and other methods{where} ({len(methods)}):")
        columns = ["method", "kind", "family", "paper", "import"]
        print(methods[columns].to_string(index=False) if len(methods) else "  (none)")
    return 0


def _run(args) -> int:
    from .lab import book

    root = book.repo_root()
    paths = book.resolve_chapters(args.chapters, root)
    if not args.inplace and args.out is None:
        print("lossbook run: give --out DIR, or --inplace to refresh the committed notebooks.", file=sys.stderr)
        return 2
    out = None if args.inplace else Path(args.out).resolve()
    total = 0.0
    for i, src in enumerate(paths, 1):
        dst = src if out is None else out / src.name
        print(f"[{i}/{len(paths)}] {src.stem} (scale={args.scale}) ...", end=" ", flush=True)
        try:
            res = book.run_chapter(src, dst, scale=args.scale, seed=args.seed, device=args.device,
                                   timeout=args.timeout)
        except book.ChapterError as exc:
            print("FAILED")
            print(f"lossbook run: {exc}", file=sys.stderr)
            return 1
        total += res.seconds
        print(f"{res.seconds:.1f} s -> {dst}")
    print(f"{len(paths)} notebook(s) in {total:.1f} s")
    return 0


def _claims(args) -> int:
    import pandas as pd

    from .lab import book

    folder = Path(args.dir) if args.dir else book.repo_root() / "notebooks"
    df = book.collect_claims(folder)
    with pd.option_context("display.max_colwidth", 80, "display.width", 250):
        columns = ["chapter", "paper", "verdict", *(["stability"] if "stability" in df else []), "measured"]
        print(df[columns].to_string(index=False) if len(df) else "no claims found")
    return 0


def _provenance(args) -> int:
    from .lab import book

    paths = book.resolve_chapters(args.chapters, book.repo_root())
    if args.backfill:
        for path in paths:
            if book.read_run_record(path) and not args.force:
                print(f"{path.stem}: has a run record; left as it is (--force replaces it)")
                continue
            rec = book.backfill_run_record(path, force=args.force)
            since = rec["code_changed_since"]
            edits = ", ".join(c[:7] if len(c) == 40 else c for c in since)
            note = f"; code cells edited since, without a re-run, in {edits}" if since else ""
            print(f"{path.stem}: backfilled: outputs from commit {rec['lossbook_commit'][:7]} of {rec['date']}, "
                  f"scale={rec['scale']}{note}")
        return 0
    failed = 0
    for path in paths:
        problem = book.check_run_record(path)
        if problem:
            failed += 1
            print(problem)
            continue
        rec = book.read_run_record(path)
        commit = (rec.get("lossbook_commit") or "")[:7] or f"lossbook {rec.get('lossbook_version')}"
        flags = "".join([" (uncommitted lossbook/ changes)" if rec.get("dirty") else "",
                         " (backfilled)" if rec.get("backfilled") else ""])
        print(f"{path.stem}: current: scale={rec.get('scale')}, {commit}, {rec.get('date')}{flags}")
    return 1 if failed else 0


def _jupyter_book() -> str:
    """The ``jupyter-book`` script of this environment (beside the interpreter), else on PATH."""
    here = Path(sys.executable).parent / "jupyter-book"
    found = str(here) if here.exists() else shutil.which("jupyter-book")
    if found is None:
        raise SystemExit("lossbook build: jupyter-book is not installed; pip install 'lossbook[book]'.")
    return found


def _build(args) -> int:
    from .lab import book

    root = book.repo_root()
    jb = _jupyter_book()
    if args.all:
        subprocess.run([jb, "clean", "--all", str(root)], check=False)
    return subprocess.run([jb, "build", str(root), "-W", "-n", "--keep-going"], check=False).returncode


def _api(args) -> int:
    from .lab.apidoc import api_markdown

    text = api_markdown()
    if args.write is None:
        print(text, end="")
        return 0
    Path(args.write).write_text(text)
    print(f"lossbook api: wrote {args.write} ({text.count(chr(10))} lines)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .lab.book import SCALES

    p = argparse.ArgumentParser(prog="lossbook", description="The lossbook library and executable book.")
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("list", help="list the registered losses, then the heads, layers and other methods")
    pl.add_argument("--family", choices=FAMILIES)
    pl.set_defaults(func=_list)

    pr = sub.add_parser("run", help="execute chapters with papermill")
    pr.add_argument("chapters", nargs="*", help="chapter names or numbers (default: all, then the report card)")
    pr.add_argument("--scale", choices=SCALES, default="smoke")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    pr.add_argument("--out", help="folder for the executed notebooks")
    pr.add_argument("--inplace", action="store_true", help="overwrite notebooks/ (what the book renders)")
    pr.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    pr.set_defaults(func=_run)

    pc = sub.add_parser("claims", help="print every chapter's claims and verdicts")
    pc.add_argument("dir", nargs="?", help="folder of executed chapters (default: notebooks/)")
    pc.set_defaults(func=_claims)

    pv = sub.add_parser("provenance", help="check that the committed notebooks' outputs come from their "
                                           "current code (their run records)")
    pv.add_argument("chapters", nargs="*", help="chapter names or numbers (default: all, then the report card)")
    pv.add_argument("--backfill", action="store_true",
                    help="write a run record (marked backfilled) from the git history of the notebook's outputs, "
                         "for notebooks made before records existed; no re-run")
    pv.add_argument("--force", action="store_true", help="with --backfill: replace an existing record")
    pv.set_defaults(func=_provenance)

    pb = sub.add_parser("build", help="build the HTML book (jupyter-book v1, warnings as errors)")
    pb.add_argument("--all", action="store_true", help="clean the build folder first")
    pb.set_defaults(func=_build)

    pa = sub.add_parser("api", help="print (or --write) the book's API reference page, generated from the "
                                    "registry and the docstrings")
    pa.add_argument("--write", metavar="PATH", help="write the page to PATH (the book's is api.md)")
    pa.set_defaults(func=_api)

    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
