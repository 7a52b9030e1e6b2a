#!/usr/bin/env python3
"""Check a tally receipt: are this payment's votes in the contest's certified result?

    python3 verify_receipt.py RECEIPT [--results RESULTS | --root HEX]

RECEIPT is the receipt's JSON (https://<host>/payments/<reference>/receipt.json), RESULTS the
published result (https://<host>/results/<slug>.json): each a file or an http(s) URL. Python's
standard library only, and none of tally's code: it rebuilds each of the payment's ledger
entries as bytes, hashes them, walks the Merkle path up and compares the root it reaches with
the published one (docs/results.md). Exit 0: proven; 1: not proven; 2: bad input.
"""

import argparse
import hashlib
import json
import re
import sys
import urllib.request
from typing import Any

REFERENCE = re.compile(r"[A-Za-z0-9.=-]{1,100}")


def entry_bytes(entry: dict[str, Any]) -> bytes:
    """`reference:kind:votes:contestant` in ASCII (docs/results.md, the leaves)."""
    reference, kind = str(entry["reference"]), str(entry["kind"])
    votes, contestant = entry["votes"], entry["contestant"]
    if not REFERENCE.fullmatch(reference) or kind not in ("credit", "reversal"):
        raise ValueError(f"not a ledger entry: {entry}")
    if type(votes) is not int or type(contestant) is not int:
        raise ValueError(f"votes and contestant must be integers: {entry}")
    return f"{reference}:{kind}:{votes}:{contestant}".encode("ascii")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def root_from_path(leaf: bytes, path: list[dict[str, str]]) -> bytes:
    node = leaf
    for step in path:
        sibling = bytes.fromhex(step["hash"])
        if step["side"] == "left":
            node = sha256(b"\x01" + sibling + node)
        elif step["side"] == "right":
            node = sha256(b"\x01" + node + sibling)
        else:
            raise ValueError(f"a step's side is left or right, not {step['side']!r}")
    return node


def load(source: str) -> Any:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=20) as response:
            return json.load(response)
    with open(source, encoding="utf-8") as file:
        return json.load(file)


def published_root(receipt: dict[str, Any], results: dict[str, Any]) -> str:
    """The root the results page published for the receipt's certification number."""
    if results.get("contest", {}).get("slug") != receipt["contest"]["slug"]:
        raise ValueError("the receipt and the results are about different contests")
    number = receipt["certification"]["number"]
    for certification in results["certifications"]:
        if certification["number"] == number:
            return str(certification["root"])
    raise ValueError(f"the results publish no certification number {number}")


def verify(receipt: dict[str, Any], root: str | None) -> list[str]:
    """What is proven, one line per leaf; ValueError for anything that does not add up."""
    certification = receipt.get("certification")
    if not certification:
        raise ValueError("the contest is not certified yet: nothing to check")
    claimed = str(certification["root"])
    if root is not None and root.lower() != claimed:
        raise ValueError(f"the receipt's root {claimed} is not the published root {root}")
    if not receipt["leaves"]:
        raise ValueError("the receipt has no ledger entry: no votes of this payment count")
    proven = []
    for leaf in receipt["leaves"]:
        entry = leaf["entry"]
        if entry["reference"] != receipt["reference"]:
            raise ValueError(f"a leaf of another payment: {entry['reference']}")
        leaf_hash = sha256(b"\x00" + entry_bytes(entry))
        if leaf_hash.hex() != leaf["leaf"]:
            raise ValueError(f"leaf {leaf['index']}: its hash is not that of its entry")
        reached = root_from_path(leaf_hash, leaf["path"]).hex()
        if reached != claimed:
            raise ValueError(f"leaf {leaf['index']}: the path reaches {reached}, not {claimed}")
        proven.append(
            f"{entry['kind']} of {entry['votes']} votes for contestant {entry['contestant']} "
            f"is leaf {leaf['index']} of {certification['entries']}"
        )
    return proven


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("receipt", help="the receipt's JSON: a file or an http(s) URL")
    published = parser.add_mutually_exclusive_group()
    published.add_argument("--results", help="the published results' JSON: a file or a URL")
    published.add_argument("--root", help="the published root, 64 hex digits")
    arguments = parser.parse_args(argv)
    try:
        receipt = load(arguments.receipt)
        root = arguments.root
        if arguments.results:
            root = published_root(receipt, load(arguments.results))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot read the input: {exc}", file=sys.stderr)
        return 2
    try:
        lines = verify(receipt, root)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"NOT PROVEN: {exc}")
        return 1
    certification = receipt["certification"]
    name = "certification" if certification["number"] == 0 else "amendment"
    print(
        f"PROVEN: payment {receipt['reference']} is in the result of {receipt['contest']['slug']}"
    )
    for line in lines:
        print(f"  {line}")
    print(f"  under root {certification['root']} ({name} {certification['number']})")
    if root is None:
        print("  compare that root with the published one (--results or --root) to finish")
    else:
        print("  which is the published root")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
