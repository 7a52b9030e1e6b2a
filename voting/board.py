"""The leaderboard's arithmetic, shared by the contest page and the certified results: ranks
and shares in integer arithmetic (the contest page's script repeats it for live updates)."""

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    id: int
    name: str
    slug: str
    votes: int
    votes_under_dispute: int


@dataclass(frozen=True)
class Ranked:
    line: Line
    rank: int  # 1 + how many have more votes: ties share a rank ("1, 2, 2, 4")
    share: str  # of all votes, to a tenth of a percent, rounded down: "45.2%"


@dataclass(frozen=True)
class Board:
    lines: list[Ranked]  # most votes first, then by id
    total: int

    @property
    def scale(self) -> int:
        """The bars' full length: the total, or 1 while nobody has a vote."""
        return max(self.total, 1)


def share(votes: int, total: int) -> str:
    tenths = votes * 1000 // total if total else 0
    return f"{tenths // 10}.{tenths % 10}%"


def board_of(lines: Iterable[Line]) -> Board:
    ordered = sorted(lines, key=lambda line: (-line.votes, line.id))
    total = sum(line.votes for line in ordered)
    ranked: list[Ranked] = []
    for position, line in enumerate(ordered):
        ahead = ranked[-1] if ranked else None
        rank = ahead.rank if ahead and ahead.line.votes == line.votes else position + 1
        ranked.append(Ranked(line=line, rank=rank, share=share(line.votes, total)))
    return Board(lines=ranked, total=total)
