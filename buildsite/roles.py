from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    MAINTAINER = "maintainer", "Maintainer"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self]

    def allows(self, needed: "Role") -> bool:
        return ROLE_RANK[self] >= ROLE_RANK[needed]


ROLE_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.MAINTAINER: 3}
