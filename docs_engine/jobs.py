"""django-q2 entry points of the documentation engine (thin wrappers)."""

from buildsite.models import Project

from .services import run_link_check


def check_links(project_id: int, reason: str) -> dict:
    project = Project.objects.filter(id=project_id).first()
    if project is None:
        return {"skipped": "project gone"}
    report = run_link_check(project=project, reason=reason)
    return {"broken": len(report.broken), "newly_broken": len(report.newly_broken)}
