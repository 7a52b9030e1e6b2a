from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # Built concurrently: the delivery log may hold millions of rows, and a plain CREATE INDEX
    # would block webhook inserts (503s) for as long as it scans them.
    atomic = False

    dependencies = [
        ("webhooks", "0001_initial"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("status__in", ["received", "queued", "processing", "failed"])),
                fields=["status", "received_at"],
                name="delivery_watched_status",
            ),
        ),
    ]
