"""`chaosctl`: validate the catalogue and render the Chaos Mesh objects the system would create."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from chaos_engineering.catalogue import load_catalogue
from chaos_engineering.render import render_chaos_object


def _validate(args: argparse.Namespace) -> int:
    catalogue = load_catalogue([Path(p) for p in args.paths] or None, args.policy)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "valid": catalogue.ok,
                    "files": [str(f) for f in catalogue.files],
                    "experiments": sorted(catalogue.experiments),
                    "issues": [i.as_dict() for i in catalogue.issues],
                },
                indent=2,
            )
        )
    else:
        for issue in catalogue.issues:
            print(issue)
        verdict = "valid" if catalogue.ok else f"INVALID: {len(catalogue.issues)} issue(s)"
        print(f"{len(catalogue.files)} file(s), {len(catalogue.experiments)} valid experiment(s): {verdict}")
    return 0 if catalogue.ok else 1


def _render(args: argparse.Namespace) -> int:
    catalogue = load_catalogue([Path(p) for p in args.catalogue] if args.catalogue else None, args.policy)
    experiment = catalogue.get(args.name)
    if experiment is None or catalogue.policy is None:
        for issue in catalogue.issues:
            print(issue, file=sys.stderr)
        print(f"no valid experiment named {args.name!r} (valid: {', '.join(sorted(catalogue.experiments)) or 'none'})", file=sys.stderr)
        return 1
    manifest = render_chaos_object(experiment, catalogue.policy, dag_id=args.dag_id, run_id=args.run_id)
    if args.output == "json":
        print(json.dumps(manifest, indent=2))
    else:
        print(yaml.safe_dump(manifest, sort_keys=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chaosctl", description=__doc__)
    parser.add_argument("--policy", type=Path, help="safety policy file (default: include/safety_policy.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check experiment files against the schema and the policy")
    validate.add_argument("paths", nargs="*", help="files or folders (default: the catalogue)")
    validate.add_argument("--format", choices=["text", "json"], default="text")
    validate.set_defaults(run=_validate)

    render = commands.add_parser("render", help="print the Chaos Mesh object the system would create")
    render.add_argument("name", help="experiment name")
    render.add_argument("--catalogue", nargs="*", help="files or folders (default: the catalogue)")
    render.add_argument("--dag-id", default="chaosctl")
    render.add_argument("--run-id", default="render")
    render.add_argument("--output", choices=["yaml", "json"], default="yaml")
    render.set_defaults(run=_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
