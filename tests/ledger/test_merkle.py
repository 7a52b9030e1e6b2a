"""The ledger's Merkle tree: RFC 6962's tree, paths that prove each leaf, blocks that give
the same root, and an entry encoding with one reading only."""

import hashlib

import pytest

from ledger import merkle


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH from RFC 6962 §2.1, written from the RFC: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return hashlib.sha256(
        b"\x01" + rfc6962_root(leaves[:split]) + rfc6962_root(leaves[split:])
    ).digest()


def leaves(count: int) -> list[bytes]:
    return [merkle.leaf_hash(f"tly-{n}:credit:{n + 1}:7".encode()) for n in range(count)]


@pytest.mark.parametrize("count", range(0, 70))
def test_the_root_is_rfc6962s_and_every_leafs_path_reaches_it(count):
    nodes = leaves(count)

    root = merkle.root_of(nodes)

    assert root == rfc6962_root(nodes)
    for index, leaf in enumerate(nodes):
        assert merkle.root_from_path(leaf, merkle.path_of(nodes, index)) == root


@pytest.mark.parametrize("block", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("count", [1, 5, 16, 17, 33, 64, 65])
def test_the_root_over_block_roots_is_the_root_over_the_leaves(block, count):
    nodes = leaves(count)
    blocks = [nodes[at : at + block] for at in range(0, count, block)]

    assert merkle.root_of([merkle.root_of(part) for part in blocks]) == merkle.root_of(nodes)
    # and a path in two parts, within the block then across blocks, is the whole path
    for index in range(count):
        part, position = divmod(index, block)
        path = merkle.path_of(blocks[part], position) + merkle.path_of(
            [merkle.root_of(b) for b in blocks], part
        )
        assert path == merkle.path_of(nodes, index)


def test_a_wrong_leaf_or_a_wrong_step_does_not_reach_the_root():
    nodes = leaves(9)
    root = merkle.root_of(nodes)
    path = merkle.path_of(nodes, 4)

    assert merkle.root_from_path(nodes[5], path) != root
    flipped: list[merkle.Step] = [("left" if s == "right" else "right", h) for s, h in path]
    assert merkle.root_from_path(nodes[4], flipped) != root


def test_a_lone_last_node_moves_up_and_is_never_paired_with_itself():
    # Bitcoin's duplicate-the-last rule gives [a, b, c] and [a, b, c, c] one root; this does not.
    three = leaves(3)

    assert merkle.root_of(three) != merkle.root_of([*three, three[-1]])
    assert merkle.path_of(three, 2) == [("left", merkle.node_hash(three[0], three[1]))]


def test_leaves_and_nodes_are_hashed_apart():
    data = b"tly-1:credit:1:1"

    assert merkle.leaf_hash(data) == hashlib.sha256(b"\x00" + data).digest()
    assert merkle.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert merkle.root_of([]) == hashlib.sha256(b"").digest()


def test_an_entry_is_encoded_as_reference_kind_signed_votes_contestant():
    assert merkle.entry_bytes(reference="tly-ab12", kind="credit", votes=3, contestant=12) == (
        b"tly-ab12:credit:3:12"
    )
    assert merkle.entry_bytes(reference="tly-ab12", kind="reversal", votes=-3, contestant=12) == (
        b"tly-ab12:reversal:-3:12"
    )


@pytest.mark.parametrize(
    ("reference", "kind"), [("tly:1", "credit"), ("", "credit"), ("tly-1", "refund")]
)
def test_an_entry_that_could_be_read_two_ways_is_refused(reference, kind):
    with pytest.raises(ValueError):
        merkle.entry_bytes(reference=reference, kind=kind, votes=1, contestant=1)
