"""The full-text indexes next to this app's tables: FTS5 on SQLite, tsvector + GIN on
PostgreSQL (as docs_engine's 0002_search_index). Both follow the rows automatically
(triggers / a generated column), so the services only ever write the rows."""

from django.db import migrations

# table -> its primary key, the FTS5 rowid
TABLES = {"search_logchunk": "id", "search_promptentry": "prompt_id", "search_runentry": "run_id"}


def sqlite_up(table: str, key: str) -> list[str]:
    fts = f"{table}_fts"
    insert = f"INSERT INTO {fts}(rowid, title, body) VALUES (new.{key}, new.title, new.body);"
    delete = (
        f"INSERT INTO {fts}({fts}, rowid, title, body)"
        f" VALUES ('delete', old.{key}, old.title, old.body);"
    )
    return [
        f"""CREATE VIRTUAL TABLE {fts} USING fts5(
            title, body, content='{table}', content_rowid='{key}',
            tokenize='porter unicode61 remove_diacritics 2', prefix='2 3')""",
        f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE TRIGGER {fts}_au AFTER UPDATE ON {table} BEGIN {delete} {insert} END",
    ]


def sqlite_down(table: str, key: str) -> list[str]:
    fts = f"{table}_fts"
    return [f"DROP TRIGGER IF EXISTS {fts}_{t}" for t in ("au", "ad", "ai")] + [
        f"DROP TABLE IF EXISTS {fts}"
    ]


def postgres_up(table: str, key: str) -> list[str]:
    return [
        f"""ALTER TABLE {table} ADD COLUMN vector tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') ||
            setweight(to_tsvector('english'::regconfig, coalesce(body, '')), 'D')
        ) STORED""",
        f"CREATE INDEX {table}_vector ON {table} USING GIN (vector)",
    ]


def postgres_down(table: str, key: str) -> list[str]:
    return [
        f"DROP INDEX IF EXISTS {table}_vector",
        f"ALTER TABLE {table} DROP COLUMN IF EXISTS vector",
    ]


def _run(by_vendor):
    def run(apps, schema_editor):
        make = by_vendor.get(schema_editor.connection.vendor)
        for table, key in TABLES.items() if make else ():
            for sql in make(table, key):
                schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("search", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": sqlite_up, "postgresql": postgres_up}),
            _run({"sqlite": sqlite_down, "postgresql": postgres_down}),
        )
    ]
