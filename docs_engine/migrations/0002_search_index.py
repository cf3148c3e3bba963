"""The full-text index next to SearchEntry: FTS5 on SQLite, tsvector + GIN on PostgreSQL.

Both follow the SearchEntry rows automatically (triggers / a generated column), so the
services only ever write SearchEntry, inside the same transaction as the document.
"""

from django.db import migrations

SQLITE_UP = [
    """CREATE VIRTUAL TABLE docs_engine_fts USING fts5(
        title, body, tags,
        content='docs_engine_searchentry', content_rowid='document_id',
        tokenize='porter unicode61 remove_diacritics 2', prefix='2 3')""",
    """CREATE TRIGGER docs_engine_fts_ai AFTER INSERT ON docs_engine_searchentry BEGIN
        INSERT INTO docs_engine_fts(rowid, title, body, tags)
        VALUES (new.document_id, new.title, new.body, new.tags);
    END""",
    """CREATE TRIGGER docs_engine_fts_ad AFTER DELETE ON docs_engine_searchentry BEGIN
        INSERT INTO docs_engine_fts(docs_engine_fts, rowid, title, body, tags)
        VALUES ('delete', old.document_id, old.title, old.body, old.tags);
    END""",
    """CREATE TRIGGER docs_engine_fts_au AFTER UPDATE ON docs_engine_searchentry BEGIN
        INSERT INTO docs_engine_fts(docs_engine_fts, rowid, title, body, tags)
        VALUES ('delete', old.document_id, old.title, old.body, old.tags);
        INSERT INTO docs_engine_fts(rowid, title, body, tags)
        VALUES (new.document_id, new.title, new.body, new.tags);
    END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS docs_engine_fts_au",
    "DROP TRIGGER IF EXISTS docs_engine_fts_ad",
    "DROP TRIGGER IF EXISTS docs_engine_fts_ai",
    "DROP TABLE IF EXISTS docs_engine_fts",
]

POSTGRES_UP = [
    """ALTER TABLE docs_engine_searchentry ADD COLUMN vector tsvector
        GENERATED ALWAYS AS (
            setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') ||
            setweight(to_tsvector('english'::regconfig, coalesce(tags, '')), 'B') ||
            setweight(to_tsvector('english'::regconfig, coalesce(body, '')), 'D')
        ) STORED""",
    "CREATE INDEX docs_engine_searchentry_vector ON docs_engine_searchentry USING GIN (vector)",
]
POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS docs_engine_searchentry_vector",
    "ALTER TABLE docs_engine_searchentry DROP COLUMN IF EXISTS vector",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("docs_engine", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_UP, "postgresql": POSTGRES_UP}),
            _run({"sqlite": SQLITE_DOWN, "postgresql": POSTGRES_DOWN}),
        )
    ]
