import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ledger', '0006_operator_log'),
    ]

    operations = [
        migrations.CreateModel(
            name='Certification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.IntegerField(help_text='0: the certification; 1, 2, …: amendments.')),
                ('root', models.CharField(help_text='SHA-256 Merkle root, lowercase hex.', max_length=64)),
                ('entries', models.IntegerField(help_text='Ledger entries covered.')),
                ('horizon', models.BigIntegerField(help_text="Covers the contest's entries with id <= this.")),
                ('chunk_size', models.IntegerField(help_text='Leaves per stored block; a power of two.')),
                ('chunk_roots', models.BinaryField(help_text="The blocks' roots, 32 bytes each, in order.")),
                ('chunk_starts', django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), default=list, help_text="Each block's first entry id.", size=None)),
                ('flagged', models.JSONField(default=dict, help_text='Flagged payments of the contest then, by reason: {reason: n}.')),
                ('reason', models.TextField(blank=True, help_text='What an amendment changes.')),
                ('actor', models.CharField(blank=True, help_text='Who certified, when a person did; empty: beat.', max_length=150)),
                ('certified_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['contest_id', 'number'],
            },
        ),
        migrations.CreateModel(
            name='CertifiedTotal',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('votes', models.BigIntegerField()),
                ('votes_under_dispute', models.BigIntegerField(help_text='Of `votes`, those whose payment had an open chargeback then.')),
            ],
            options={
                'ordering': ['certification_id', 'contestant_id'],
            },
        ),
        migrations.AddField(
            model_name='certification',
            name='contest',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='certifications', to='ledger.contest'),
        ),
        migrations.AddField(
            model_name='certifiedtotal',
            name='certification',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='totals', to='ledger.certification'),
        ),
        migrations.AddField(
            model_name='certifiedtotal',
            name='contestant',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='certified_totals', to='ledger.contestant'),
        ),
        migrations.AddConstraint(
            model_name='certification',
            constraint=models.UniqueConstraint(fields=('contest', 'number'), name='certification_number_once'),
        ),
        migrations.AddConstraint(
            model_name='certification',
            constraint=models.CheckConstraint(condition=models.Q(('number__gte', 0)), name='certification_number_valid'),
        ),
        migrations.AddConstraint(
            model_name='certification',
            constraint=models.CheckConstraint(condition=models.Q(('root__regex', '^[0-9a-f]{64}$')), name='certification_root_is_sha256'),
        ),
        migrations.AddConstraint(
            model_name='certification',
            constraint=models.CheckConstraint(condition=models.Q(('entries__gte', 0), ('horizon__gte', 0)), name='certification_counts_valid'),
        ),
        migrations.AddConstraint(
            model_name='certification',
            constraint=models.CheckConstraint(condition=models.Q(('chunk_size__gte', 1)), name='certification_chunk_size_positive'),
        ),
        migrations.AddConstraint(
            model_name='certification',
            constraint=models.CheckConstraint(condition=models.Q(('number', 0), models.Q(('reason', ''), _negated=True), _connector='OR'), name='certification_amendment_has_reason'),
        ),
        migrations.AddConstraint(
            model_name='certifiedtotal',
            constraint=models.UniqueConstraint(fields=('certification', 'contestant'), name='certified_total_once'),
        ),
        migrations.AddConstraint(
            model_name='certifiedtotal',
            constraint=models.CheckConstraint(condition=models.Q(('votes__gte', 0), ('votes_under_dispute__gte', 0), ('votes_under_dispute__lte', models.F('votes'))), name='certified_total_valid'),
        ),
    ]
