"""Indexes for the access-event browser"s filters (key, status, target), each with the id
for its keyset walk. Built CONCURRENTLY, outside a transaction: on a large access log a
plain CREATE INDEX would block every request"s access event for as long as it builds."""

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.operations import AddIndex


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """CONCURRENTLY on PostgreSQL; a plain index on the quick start"s SQLite."""

    def database_forwards(self, app_label: str, schema_editor: Any, *args: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, *args)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, *args)

    def database_backwards(self, app_label: str, schema_editor: Any, *args: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, *args)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, *args)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0007_access_rollup"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="accessevent",
            index=models.Index(fields=["key_prefix", "-id"], name="access_by_key"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="accessevent",
            index=models.Index(fields=["status", "-id"], name="access_by_status"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="accessevent",
            index=models.Index(fields=["target", "-id"], name="access_by_target"),
        ),
    ]
