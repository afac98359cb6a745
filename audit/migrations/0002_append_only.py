"""The log head row, and append-only enforcement of the log and the access log.

On PostgreSQL a trigger refuses every UPDATE and DELETE on both tables, whoever issues it,
so that neither the application nor a stray SQL session can rewrite history. (TRUNCATE
needs table ownership and is left to the database owner; the Merkle log of a later
issue detects it.) SQLite, the quick start, gets no trigger.
"""

from django.db import migrations

TABLES = ("audit_logevent", "audit_accessevent")

FUNCTION = """
CREATE OR REPLACE FUNCTION consortium_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    apps.get_model("audit", "LogHead").objects.get_or_create(id=1, defaults={"size": 0})
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION, params=None)
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION consortium_refuse_change()"
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS consortium_refuse_change()")


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
