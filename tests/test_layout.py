"""The import graph has only the directions docs/architecture.md draws.

voting, the webhook front door and ops → tasks → ledger and the delivery log → paystack's
types; config imports no app; sandbox, bench and devstack are imported by no product code.
Read from the source with ast, so an import inside a function counts too.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The delivery log is below tasks; the rest of webhooks is the front door above them.
DELIVERY_LOG = ("webhooks.models", "webhooks.events", "webhooks.migrations")
PAYSTACK_VALUES = ("paystack.types", "paystack.errors")

# room → the rooms it may import (besides itself). Rooms are module prefixes; the longest
# matching prefix names a module's room.
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "paystack": set(),
    "ledger": {"config", *PAYSTACK_VALUES},
    **{log: {"config", *PAYSTACK_VALUES, *DELIVERY_LOG} for log in DELIVERY_LOG},
    "tasks": {"config", "ledger", "paystack", *DELIVERY_LOG},
    "webhooks": {"config", "ledger", "tasks", *PAYSTACK_VALUES, *DELIVERY_LOG},
    "voting": {"config", "ledger", "tasks", "paystack"},
    "ops": {"config", "ledger", "tasks", "voting", "paystack", "webhooks", *DELIVERY_LOG},
    "sandbox": set(),
    "devstack": set(),
    "bench": {"config", "ledger", "tasks", "webhooks", "ops", "paystack", "devstack"},
    "manage": set(),
}
ROOMS = sorted({*ALLOWED, "paystack.types", "paystack.errors"}, key=len, reverse=True)
SOURCE_ROOTS = [
    "config",
    "paystack",
    "ledger",
    "webhooks",
    "tasks",
    "voting",
    "ops",
    "sandbox",
    "devstack",
    "bench",
]


def room_of(module: str) -> str | None:
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            return room
    return None


def module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute, wherever the import statement stands."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            # `from paystack import client` imports paystack.client
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def edges() -> list[tuple[str, str, str]]:
    """(file, its room, the room of a module it imports) for every import of our code."""
    found = []
    for root in SOURCE_ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            source_room = room_of(module_of(path))
            assert source_room is not None, path
            for module in imported_modules(path):
                target_room = room_of(module)
                if target_room is not None and target_room != source_room:
                    found.append((str(path.relative_to(REPO)), source_room, target_room))
    return found


def allowed(source_room: str, target_room: str) -> bool:
    top = source_room.split(".")[0]
    if source_room not in DELIVERY_LOG and target_room.split(".")[0] == top:
        return True  # within one package; only the delivery log is walled off from its own
    permitted = ALLOWED.get(source_room, ALLOWED[top])
    # Importing a room admits its sub-rooms (tasks may import paystack.types).
    return target_room in permitted or any(target_room.startswith(p + ".") for p in permitted)


def test_every_import_runs_in_an_allowed_direction():
    wrong = [
        f"{path}: {source} must not import {target}"
        for path, source, target in edges()
        if not allowed(source, target)
    ]
    assert wrong == []


def test_tests_share_process_starters_with_the_bench_through_devstack_not_bench():
    importers = [
        str(path.relative_to(REPO))
        for path in REPO.glob("tests/**/*.py")
        if any(room_of(module) == "bench" for module in imported_modules(path))
    ]
    assert importers == []


def test_the_rule_catches_a_wrong_import():
    """The check itself can fail: a delivery log importing a task would be refused."""
    assert not allowed("webhooks.models", "tasks")
    assert not allowed("config", "webhooks")
    assert not allowed("ledger", "paystack.client")
    assert not allowed("voting", "bench")
    assert not allowed("ops", "devstack")
    assert allowed("tasks", "paystack.client")
