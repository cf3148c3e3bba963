"""django-q2 entry points: thin wrappers around the services."""

from .attempts import TaskEnd
from .execution import execute_task
from .maintenance import tick as run_tick


def run_task(task_id: int, attempt: int) -> TaskEnd | str:
    return execute_task(task_id=task_id, attempt=attempt)


def tick() -> dict[str, int]:
    return run_tick()


def noop(*args: object) -> None:
    """The raw django-q2 job the scheduler benchmark compares against."""
