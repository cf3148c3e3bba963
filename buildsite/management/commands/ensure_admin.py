import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped (Any base)
    help = (
        "Create the superuser 'admin' if missing: password from DJANGO_SUPERUSER_PASSWORD, "
        "else generated and printed once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(username="admin").exists():
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "admin@localhost", password)
        if generated:
            self.stdout.write(
                self.style.WARNING(f"Created superuser 'admin' with password: {password}")
            )
            self.stdout.write("(shown once; set DJANGO_SUPERUSER_PASSWORD to choose it)")
        else:
            self.stdout.write(
                "Created superuser 'admin' (password from DJANGO_SUPERUSER_PASSWORD)."
            )
