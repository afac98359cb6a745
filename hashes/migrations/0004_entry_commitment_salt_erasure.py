from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("hashes", "0003_signed_statement_nonce")]

    operations = [
        migrations.AddField(
            model_name="submission",
            name="payload_version",
            field=models.PositiveSmallIntegerField(default=2),
        ),
        migrations.AddField(
            model_name="submission",
            name="redacted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="submission",
            name="redaction_reason",
            field=models.TextField(blank=True, default=""),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="entry",
            name="value",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="entry",
            name="salt",
            field=models.CharField(max_length=32, null=True),
        ),
        migrations.AddField(
            model_name="entry",
            name="commitment",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="entry",
            name="status",
            field=models.CharField(
                choices=[("active", "Active"), ("revoked", "Revoked"), ("erased", "Erased")],
                default="active",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="entry",
            name="erased_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="entry",
            name="erased_log_index",
            field=models.BigIntegerField(help_text="Index of the erasure.", null=True),
        ),
        migrations.AddField(
            model_name="entry",
            name="erasure_reason",
            field=models.TextField(blank=True, default=""),
            preserve_default=False,
        ),
    ]
