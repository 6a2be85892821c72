"""`tamiyo keys`: make a policy signing keypair, or show the ids of keys (to check what a service trusts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="policy signing keys: generate a keypair, show key ids")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    gen = verbs.add_parser("generate", help="write an Ed25519 keypair: policy_signing.pem (0600) + .pub.pem")
    gen.add_argument("--out", type=Path, required=True, help="directory (created 0700 if missing)")
    gen.add_argument("--force", action="store_true", help="replace a keypair already there")
    gen.add_argument("--if-missing", action="store_true", help="keep a keypair already there (an init step)")
    gen.add_argument(
        "--public-out", type=Path, default=None, help="also write the public key here (a directory the readers mount)"
    )
    gen.set_defaults(handler=_generate)
    show = verbs.add_parser("show", help="the key id of each private or public key file (never the key)")
    show.add_argument("paths", nargs="+", type=Path)
    show.set_defaults(handler=_show)


def _generate(args: argparse.Namespace) -> int:
    from tamiyo.cli.keys import KeyConfigError
    from tamiyo.contracts.key_files import PRIVATE_NAME, PUBLIC_NAME, KeyFileError, load_signer, write_keypair

    if args.force and args.if_missing:
        raise KeyConfigError("--force and --if-missing contradict each other")
    try:
        existing = args.out / PRIVATE_NAME
        if args.if_missing and existing.exists():
            private, public, signer, made = existing, args.out / PUBLIC_NAME, load_signer(existing), False
        else:
            (private, public, signer), made = write_keypair(args.out, overwrite=args.force), True
        public_copies = [str(public)]
        if args.public_out is not None:
            args.public_out.mkdir(parents=True, exist_ok=True)
            (args.public_out / PUBLIC_NAME).write_bytes(signer.public_pem())
            public_copies.append(str(args.public_out / PUBLIC_NAME))
    except (KeyFileError, OSError) as err:
        raise KeyConfigError(str(err)) from None
    print(json.dumps({"key_id": signer.key_id, "generated": made, "private_key": str(private),
                      "public_keys": public_copies}))  # fmt: skip
    return 0


def _show(args: argparse.Namespace) -> int:
    from tamiyo.cli.keys import KeyConfigError
    from tamiyo.contracts.key_files import KeyFileError, load_signer, load_trusted

    out: list[dict[str, object]] = []
    for path in args.paths:
        try:
            if path.is_file() and b"PRIVATE KEY" in path.read_bytes()[:200]:
                out.append({"path": str(path), "kind": "private", "key_id": load_signer(path).key_id})
            else:
                out.append({"path": str(path), "kind": "public", "key_ids": load_trusted([path]).ids})
        except (KeyFileError, OSError) as err:
            raise KeyConfigError(f"{path}: {err}") from None
    print(json.dumps(out))
    return 0
