from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from builds.demo.seed import seed_demo


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped (Any base)
    help = (
        "Create (or complete) the demo project: pipelines, the release-notes prompt with "
        "its dataset and gate, documents, and its first builds; safe to run again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        admin = get_user_model().objects.filter(username="admin").first()
        if admin is None:
            raise CommandError("no user 'admin': run `manage.py ensure_admin` first")
        seeded = seed_demo(admin=admin)
        verb = "Created" if seeded.created_project else "Updated"
        self.stdout.write(f"{verb} project '{seeded.project.slug}'.")
        for name, number in seeded.pipelines.items():
            self.stdout.write(f"  created pipeline '{name}' v{number}")
        for line in seeded.created:
            self.stdout.write(f"  created {line}")
        for build in seeded.builds:
            self.stdout.write(f"  started build #{build.id} ({build.pipeline.name})")
