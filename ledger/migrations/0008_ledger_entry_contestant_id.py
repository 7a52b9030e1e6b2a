import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

# The index Django made for the contestant foreign key in 0001 (its name is derived from the
# table and column, so it is the same in every database).
FOREIGN_KEY_INDEX = "ledger_ledgerentry_contestant_id_f6468962"


class Migration(migrations.Migration):
    # The ledger is the largest table: build the new index and drop the old one concurrently,
    # so credits go on while this runs. (contestant, id) replaces (contestant): still one index
    # per insert, and it also finds a contest's entries past a certification's horizon.
    atomic = False

    dependencies = [
        ("ledger", "0007_certifications"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="ledgerentry",
            index=models.Index(fields=["contestant", "id"], name="ledger_entry_contestant_id"),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX CONCURRENTLY IF EXISTS {FOREIGN_KEY_INDEX}",
                    reverse_sql=(
                        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {FOREIGN_KEY_INDEX} "
                        "ON ledger_ledgerentry (contestant_id)"
                    ),
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="ledgerentry",
                    name="contestant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="ledger_entries",
                        to="ledger.contestant",
                    ),
                ),
            ],
        ),
    ]
