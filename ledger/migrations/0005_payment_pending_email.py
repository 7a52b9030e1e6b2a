import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # Built concurrently: a plain CREATE INDEX would block new payments while it scans them all.
    atomic = False

    dependencies = [
        ("ledger", "0004_contest_price_fits_largest_order"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="payment",
            index=models.Index(
                django.db.models.functions.text.Lower("email"),
                condition=models.Q(("status", "pending")),
                name="payment_pending_email",
            ),
        ),
    ]
