from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from buildsite.errors import DomainError
from buildsite.models import Project
from buildsite.services import create_token


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped (Any base)
    help = "Create an API token for USERNAME; the token is printed once, on the last line."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--project", help="limit the token to this project slug")
        parser.add_argument("--name", default="", help="a label to recognise the token by")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            default=[],
            help="good only for this (repeatable; 'metrics': scraping /metrics), not the API",
        )

    def handle(
        self,
        *args: Any,
        username: str,
        project: str | None = None,
        name: str = "",
        scopes: list[str] | None = None,
        **options: Any,
    ) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user '{username}'.")
        scope = None
        if project:
            scope = Project.objects.filter(slug=project).first()
            if scope is None:
                raise CommandError(f"No project '{project}'.")
        try:
            token, raw = create_token(user=user, project=scope, name=name, scopes=scopes)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        where = f" for project {scope.slug}" if scope else ""
        if token.scopes:
            where += f" with scopes {', '.join(token.scopes)} (not an API token)"
        self.stderr.write(
            f"Token {token.prefix}… created for {user.username}{where}; it is not shown again."
        )
        self.stdout.write(raw)
