"""LogEvent.hash_list stops being a foreign key into hashes: a plain nullable list id.

The column (hash_list_id, bigint) and its values stay as they are; only the constraint goes.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_access_period")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterField(
                    model_name="logevent",
                    name="hash_list",
                    field=models.BigIntegerField(null=True, db_column="hash_list_id"),
                ),
            ],
            state_operations=[
                migrations.RemoveField(model_name="logevent", name="hash_list"),
                migrations.AddField(
                    model_name="logevent",
                    name="hash_list_id",
                    field=models.BigIntegerField(null=True),
                ),
            ],
        ),
    ]
