from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django.db import models

if TYPE_CHECKING:
    from enum import StrEnum

    class _TextChoices(StrEnum):
        """What mypy should know of Django's TextChoices, which is untyped here (Any):
        a str enum whose values are the strings and whose class lists its choices."""

        choices: ClassVar[list[tuple[str, str]]]
        names: ClassVar[list[str]]
        labels: ClassVar[list[str]]
        values: ClassVar[list[str]]

        @property
        def value(self) -> str: ...

        @property
        def label(self) -> str: ...

else:
    _TextChoices = models.TextChoices


class Role(_TextChoices):
    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    MAINTAINER = "maintainer", "Maintainer"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self]

    def allows(self, needed: Role) -> bool:
        return ROLE_RANK[self] >= ROLE_RANK[needed]


ROLE_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.MAINTAINER: 3}
