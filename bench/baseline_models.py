"""The baselines' counter: one row per contestant, a bench-only table the bench creates.

Declared under the `bench` label, which is not an installed app: tally's migrations never see
it, and only processes that import this module (the bench and its worker) know it exists.
"""

from typing import ClassVar

from django.db import models

from bench.environment import BASELINE_COUNTER_TABLE


class BareCounter(models.Model):
    """What a bare task locks and adds to: a contestant's total, and nothing else."""

    votes = models.BigIntegerField(default=0)

    # Django adds this manager to every model; the type checker adds it only to installed apps.
    objects: ClassVar[models.Manager["BareCounter"]]

    class Meta:
        app_label = "bench"
        managed = False
        db_table = BASELINE_COUNTER_TABLE

    def __str__(self) -> str:
        return f"counter {self.pk}: {self.votes}"
