from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from builds.demo import DEMO_PIPELINE
from builds.models import ResourcePool
from builds.services import save_pipeline
from buildsite.models import Membership, Project
from buildsite.roles import Role


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped (Any base)
    help = "Create (or update) the demo project with its sample pipeline; safe to run again."

    @transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
    def handle(self, *args: Any, **options: Any) -> None:
        admin = get_user_model().objects.filter(username="admin").first()
        project, created = Project.objects.get_or_create(
            slug="demo", defaults={"name": "Demo project"}
        )
        if admin is not None:
            Membership.objects.get_or_create(
                project=project, user=admin, defaults={"role": Role.MAINTAINER}
            )
        ResourcePool.objects.get_or_create(project=project, name="cpu", defaults={"capacity": 2})
        version = save_pipeline(user=None, project=project, name="demo", definition=DEMO_PIPELINE)
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} project 'demo' with pipeline 'demo' v{version.number}.")
