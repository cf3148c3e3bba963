from .models import Event


def events_after(
    *, build_id: int | None = None, project_id: int | None = None, after: int = 0, limit: int = 1000
) -> list[Event]:
    qs = Event.objects.filter(id__gt=after)
    if build_id is not None:
        qs = qs.filter(build_id=build_id)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    return list(qs.order_by("id")[:limit])
