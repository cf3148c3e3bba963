from .selectors import projects_for


def projects(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_projects": []}
    return {"nav_projects": projects_for(user=user)}
