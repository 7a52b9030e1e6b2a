"""The Merkle tree over a contest's ledger entries (docs/results.md, the ledger root).

Pure functions, standard library only. `docs/verify_receipt.py` repeats the leaf encoding and
the path walk on its own, so that anyone can check a receipt without tally's code.

The tree is the one of RFC 6962 §2.1 (Certificate Transparency): SHA-256, a leaf hashed as
H(0x00 || leaf bytes), an inner node as H(0x01 || left || right), so a leaf can never pass for
a node; built bottom-up by pairing neighbours, and a node left without a partner at the end
of a level moves up unchanged (never paired with a copy of itself, which would let two
different lists of entries share a root). The empty tree's root is H("").
"""

import hashlib
from collections.abc import Sequence
from typing import Literal

from paystack.types import is_reference

EMPTY_ROOT = hashlib.sha256(b"").digest()
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
ENTRY_KINDS = frozenset({"credit", "reversal"})

# One step up a path: which side the sibling sits on, and its hash.
Side = Literal["left", "right"]
Step = tuple[Side, bytes]


def entry_bytes(*, reference: str, kind: str, votes: int, contestant: int) -> bytes:
    """A ledger entry's canonical bytes: ASCII `reference:kind:votes:contestant`.

    `votes` is signed decimal (`-3` for a reversal, no `+`, no leading zeros), `contestant` the
    contestant's id. ':' is outside Paystack's reference alphabet, so the split is unambiguous.
    """
    if not is_reference(reference):
        raise ValueError(f"{reference!r} is not a payment reference")
    if kind not in ENTRY_KINDS:
        raise ValueError(f"{kind!r} is not a ledger entry kind")
    return f"{reference}:{kind}:{int(votes)}:{int(contestant)}".encode("ascii")


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def level_up(nodes: Sequence[bytes]) -> list[bytes]:
    """The next level: neighbours paired, an odd last node moved up as it is."""
    paired = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
    if len(nodes) % 2:
        paired.append(nodes[-1])
    return paired


def root_of(nodes: Sequence[bytes]) -> bytes:
    """The root over leaf hashes (or over the roots of aligned, equal-sized blocks of them:
    with blocks of a power of two, the tree over their roots is the top of the full tree)."""
    if not nodes:
        return EMPTY_ROOT
    level = list(nodes)
    while len(level) > 1:
        level = level_up(level)
    return level[0]


def path_of(nodes: Sequence[bytes], index: int) -> list[Step]:
    """The siblings from `nodes[index]` up to the root, bottom first; a level where the node
    moves up without a partner adds no step."""
    if not 0 <= index < len(nodes):
        raise IndexError(f"no node {index} among {len(nodes)}")
    path: list[Step] = []
    level = list(nodes)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(("left" if sibling < index else "right", level[sibling]))
        level = level_up(level)
        index //= 2
    return path


def root_from_path(leaf: bytes, path: Sequence[Step]) -> bytes:
    """Walk a path up from a leaf hash; equal to the root when the leaf is in the tree."""
    node = leaf
    for side, sibling in path:
        node = node_hash(sibling, node) if side == "left" else node_hash(node, sibling)
    return node
