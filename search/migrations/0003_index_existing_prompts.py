"""Templates and runs saved before this app existed: indexed once here (later saves
index themselves, see search/receivers.py). Logs need nothing: the indexer starts
reading the event outbox from its beginning."""

from django.db import migrations
from django.utils import timezone


def index_existing(apps, schema_editor):
    from search.services import prompt_body, run_body, run_title

    PromptTemplate = apps.get_model("prompts", "PromptTemplate")
    PromptRun = apps.get_model("prompts", "PromptRun")
    PromptEntry = apps.get_model("search", "PromptEntry")
    RunEntry = apps.get_model("search", "RunEntry")
    for prompt in PromptTemplate.objects.iterator(chunk_size=500):
        version = prompt.versions.order_by("-number").first()
        if version is not None:
            PromptEntry.objects.create(
                prompt_id=prompt.id, project_id=prompt.project_id,
                version_number=version.number, title=prompt.name,
                body=prompt_body(prompt, version), updated_at=timezone.now(),
            )  # fmt: skip
    batch = []
    for run in PromptRun.objects.order_by("id").iterator(chunk_size=500):
        batch.append(
            RunEntry(
                run_id=run.id, project_id=run.project_id, title=run_title(run),
                body=run_body(run), created_at=run.created_at,
            )  # fmt: skip
        )
        if len(batch) >= 500:
            RunEntry.objects.bulk_create(batch)
            batch = []
    RunEntry.objects.bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [("search", "0002_fts")]

    operations = [migrations.RunPython(index_existing, migrations.RunPython.noop)]
