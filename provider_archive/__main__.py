"""`python -m provider_archive`: build, sign, inspect, ship the provider archive (as `wash par`).

    executable            the self-contained provider executable (PyInstaller)
    world                 wit/ encoded as world.wasm (wasm-tools)
    create                a signed PAR from an executable (and the world)
    inspect PAR           claims, targets and hashes; verifies hashes and signature
    insert PAR            add (or replace) a target's binary, re-signing
    release               a signed PAR with x86_64-linux and aarch64-linux (emulated build)
    push REF PAR          push to an OCI registry
    pull REF              pull from an OCI registry

Keys: `WASH_ISSUER_KEY` / `WASH_SUBJECT_KEY` (a seed or a file holding one), else `keys/`
(generated there the first time, with a warning).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from provider_archive.archive import (
    ArchiveError,
    ProviderArchive,
    build_archive,
    host_target,
    read_archive,
    with_binary,
    write_archive,
)
from provider_archive.claims import ClaimsError, ProviderClaims, validate
from provider_archive.oci import OciError, pull_archive, push_archive
from provider_archive.project import REPO_ROOT, project_info
from provider_archive.signing_keys import (
    ISSUER,
    SUBJECT,
    SigningKeyError,
    default_owner,
    resolve_key,
)

DEFAULT_KEYS_DIR = REPO_ROOT / "keys"


def arguments(argv: list[str] | None) -> argparse.Namespace:
    info = project_info()
    parser = argparse.ArgumentParser(
        prog="python -m provider_archive",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    executable = commands.add_parser("executable", help="build the provider executable")
    executable.add_argument("--output", type=Path, default=Path("build/sqldb-postgres"))

    world = commands.add_parser("world", help="encode wit/ as world.wasm")
    world.add_argument("--output", type=Path, default=Path("build/world.wasm"))

    create = commands.add_parser("create", help="create a signed provider archive")
    create.add_argument("--binary", type=Path, required=True)
    create.add_argument("--target", default=host_target(), help="default: this machine's")
    create.add_argument("--world", type=Path, help="world.wasm to include")
    create.add_argument("--name", default=info.name)
    create.add_argument("--vendor", default=info.vendor)
    create.add_argument("--version", default=info.version)
    create.add_argument("--revision", type=int, default=0)
    create.add_argument("--compress", action="store_true", help="gzip the archive")
    create.add_argument("--output", type=Path, required=True)

    inspect = commands.add_parser("inspect", help="show and verify a provider archive")
    inspect.add_argument("archive", type=Path)
    inspect.add_argument("--json", action="store_true", help="JSON output")

    insert = commands.add_parser("insert", help="add a target's binary, re-signing")
    insert.add_argument("archive", type=Path)
    insert.add_argument("--binary", type=Path, required=True)
    insert.add_argument("--target", required=True, help="e.g. aarch64-linux, x86_64-macos")
    insert.add_argument("--compress", action="store_true", help="gzip the archive")

    release = commands.add_parser("release", help="a PAR with both Linux targets")
    release.add_argument("--native", type=Path, required=True, help="this machine's executable")
    release.add_argument("--world", type=Path, help="world.wasm to include")
    release.add_argument("--output", type=Path, required=True)
    for option in ("name", "vendor", "version"):
        release.add_argument(f"--{option}", default=getattr(info, option))
    release.add_argument("--revision", type=int, default=0)

    for name, text in (("push", "push to an OCI registry"), ("pull", "pull from a registry")):
        transfer = commands.add_parser(name, help=text)
        transfer.add_argument("reference", help="e.g. ghcr.io/you/sqldb-postgres:0.2.0")
        if name == "push":
            transfer.add_argument("archive", type=Path)
        else:
            transfer.add_argument("--output", type=Path, default=Path("sqldb-postgres.par"))
        transfer.add_argument("--insecure", action="store_true", help="plain HTTP")

    for sub in (create, insert, release):
        sub.add_argument("--keys-dir", type=Path, default=DEFAULT_KEYS_DIR)
    return parser.parse_args(argv)


def report(archive: ProviderArchive) -> dict[str, Any]:
    """What `wash inspect --output json` shows for a provider, plus the hashes."""
    claims = archive.claims
    return {
        "name": claims.name,
        "issuer": claims.issuer,
        "service": claims.subject,
        "vendor": claims.vendor,
        "version": claims.version,
        "revision": claims.revision,
        "targets": sorted(archive.binaries),
        "schema": claims.config_schema,
        "target_hashes": dict(claims.target_hashes),
        "world": archive.world is not None,
    }


def print_table(summary: dict[str, Any]) -> None:
    print(f"{summary['name'] or 'None'} - Capability Provider")
    rows = [
        ("Account", summary["issuer"]),
        ("Service", summary["service"]),
        ("Vendor", summary["vendor"]),
        ("Version", summary["version"] or "None"),
        ("Revision", "None" if summary["revision"] is None else summary["revision"]),
    ]
    for label, value in rows:
        print(f"  {label:<10} {value}")
    print("  Supported Architecture Targets")
    for target in summary["targets"]:
        print(f"    {target:<14} sha256 {summary['target_hashes'][target]}")
    if summary["world"]:
        print(f"  WIT world      sha256 {summary['target_hashes']['world.wasm']}")
    print("  Verified       hashes and issuer signature")


def signed_archive(args: argparse.Namespace, binaries: dict[str, bytes]) -> str:
    """Write `args.output` with `binaries` (by target) and `args.world`; the issuer's key."""
    issuer = resolve_key(ISSUER, default_owner(), args.keys_dir)
    subject = resolve_key(SUBJECT, args.name, args.keys_dir)
    template = ProviderClaims(
        issuer=issuer.public_key,
        subject=subject.public_key,
        vendor=args.vendor,
        name=args.name,
        version=args.version,
        revision=args.revision,
    )
    world = args.world.read_bytes() if args.world else None
    archive = build_archive(template, binaries, world, issuer, int(time.time()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(write_archive(archive, compress=getattr(args, "compress", False)))
    return issuer.public_key


def create(args: argparse.Namespace) -> int:
    issuer = signed_archive(args, {args.target: args.binary.read_bytes()})
    print(f"wrote {args.output}: {args.name} {args.version} for {args.target}, "
          f"signed by {issuer}")  # fmt: skip
    return 0


def release(args: argparse.Namespace) -> int:
    from provider_archive.emulated_root import RootUnavailable
    from provider_archive.release import FloorTooHigh, release_targets, summary_line

    try:
        built = release_targets(args.native, args.output.parent)
    except (RootUnavailable, FloorTooHigh) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    issuer = signed_archive(args, {b.target: b.path.read_bytes() for b in built})
    print(f"wrote {args.output}: {args.output.stat().st_size / 1e6:.1f} MB, signed by {issuer}")
    for target in built:
        print(summary_line(target))
    return 0


def insert(args: argparse.Namespace) -> int:
    archive = read_archive(args.archive.read_bytes())
    issuer = resolve_key(ISSUER, default_owner(), args.keys_dir)
    if issuer.public_key != archive.claims.issuer:
        print(f"warning: re-signing with {issuer.public_key}, not the archive's issuer "
              f"{archive.claims.issuer}", file=sys.stderr)  # fmt: skip
    updated = with_binary(archive, args.target, args.binary.read_bytes(), issuer, int(time.time()))
    args.archive.write_bytes(write_archive(updated, compress=args.compress))
    print(f"{args.archive}: targets {', '.join(sorted(updated.binaries))}")
    return 0


def inspect(args: argparse.Namespace) -> int:
    archive = read_archive(args.archive.read_bytes())
    validate(archive.token, int(time.time()))
    summary = report(archive)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "executable":
        from provider_archive.executable import build_executable

        build_executable(args.output)
        return 0
    if args.command == "world":
        from provider_archive.world import encode_world

        encode_world(project_info().wit_dir, args.output)
        print(f"wrote {args.output}")
        return 0
    if args.command == "create":
        return create(args)
    if args.command == "insert":
        return insert(args)
    if args.command == "release":
        return release(args)
    if args.command == "inspect":
        return inspect(args)
    if args.command == "push":
        read_archive(args.archive.read_bytes())  # never push what a host would refuse
        digest = push_archive(args.reference, args.archive, args.insecure)
        print(f"pushed {args.archive} to {args.reference} ({digest})")
        return 0
    data = pull_archive(args.reference, args.insecure)
    read_archive(data)
    args.output.write_bytes(data)
    print(f"pulled {args.reference} to {args.output} ({len(data)} bytes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    try:
        return run(args)
    except (ArchiveError, ClaimsError, OciError, SigningKeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
