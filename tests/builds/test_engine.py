import pytest

from tests.factories import make_pipeline, run_build, task_states

PIPELINE = """
tasks:
  a:
    steps:
      - run: echo hello-a
  b:
    needs: [a]
    steps:
      - run: echo "a said {{ tasks.a.outputs.stdout_tail | trim }}"
        output: said
"""


def test_pipeline_runs_end_to_end_and_passes_outputs(project, inline_workers, fast_engine):
    make_pipeline(project, PIPELINE)
    build = run_build(project)
    assert build.state == "succeeded"
    assert task_states(build) == {"a": "succeeded", "b": "succeeded"}
    b = build.tasks.get(name="b")
    assert b.outputs["said"].endswith("a said hello-a")
    assert b.outputs["exit_code"] == 0


def test_failure_propagates_downstream_and_fails_the_build(project, inline_workers, fast_engine):
    make_pipeline(
        project,
        """
tasks:
  ok: {steps: [{run: "echo fine"}]}
  broken: {steps: [{run: "echo about to fail; exit 3"}]}
  child: {needs: [broken], steps: [{run: "echo never"}]}
  grandchild: {needs: [child, ok], steps: [{run: "echo never"}]}
""",
    )
    build = run_build(project)
    assert build.state == "failed"
    assert task_states(build) == {
        "ok": "succeeded",
        "broken": "failed",
        "child": "upstream_failed",
        "grandchild": "upstream_failed",
    }
    broken = build.tasks.get(name="broken")
    assert broken.outputs["exit_code"] == 3
    assert "exited with code 3" in broken.error
    assert "about to fail" in broken.outputs["stdout_tail"]


@pytest.mark.usefixtures("unsandboxed")  # talks to its step through a host file
def test_retries_run_again_after_backoff_until_success(
    project, inline_workers, fast_engine, tmp_path
):
    counter = tmp_path / "count"
    make_pipeline(
        project,
        f"""
tasks:
  flaky:
    retries: 2
    steps:
      - run: echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]
""",
    )
    build = run_build(project)
    flaky = build.tasks.get(name="flaky")
    assert build.state == "succeeded" and flaky.attempts == 3
    moves = list(flaky.events.filter(type="task.state").values_list("new_state", flat=True))
    assert moves.count("retrying") == 2 and moves[-1] == "succeeded"


def test_retries_spent_ends_failed(project, inline_workers, fast_engine):
    make_pipeline(project, "tasks:\n  t: {retries: 1, steps: [{run: 'exit 1'}]}\n")
    build = run_build(project)
    assert build.state == "failed" and build.tasks.get(name="t").attempts == 2


def test_step_timeout_fails_the_task(project, inline_workers, fast_engine):
    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'sleep 30', timeout: 0.5}]}\n")
    build = run_build(project)
    task = build.tasks.get(name="t")
    assert task.state == "failed" and "timed out" in task.error


def test_shell_environment_is_scrubbed_to_what_the_pipeline_declares(
    project, inline_workers, fast_engine, monkeypatch
):
    monkeypatch.setenv("SUPER_SECRET_TOKEN", "hunter2")
    make_pipeline(
        project,
        """
env: {GREETING: hello}
tasks:
  t:
    env: {WHO: "{{ params.who }}"}
    steps: [{run: "env | sort"}]
params: {who: world}
""",
    )
    build = run_build(project)
    env_dump = build.tasks.get(name="t").outputs["stdout_tail"]
    assert "GREETING=hello" in env_dump and "WHO=world" in env_dump
    assert "SUPER_SECRET_TOKEN" not in env_dump and "DJANGO" not in env_dump


def test_template_errors_fail_the_task_with_the_variable_named(
    project, inline_workers, fast_engine
):
    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'echo {{ params.missing }}'}]}\n")
    build = run_build(project)
    task = build.tasks.get(name="t")
    assert task.state == "failed" and "missing" in task.error


def test_log_file_has_the_output(project, inline_workers, fast_engine):
    from builds.selectors import task_log

    make_pipeline(project, "tasks:\n  t: {steps: [{run: 'echo line-one; echo line-two'}]}\n")
    build = run_build(project)
    log = task_log(build=build, name="t")
    assert "line-one\nline-two" in log
    streamed = "".join(e.data["text"] for e in build.events.filter(type="log"))
    assert "line-one\nline-two" in streamed


def test_events_record_every_transition_in_order(project, inline_workers, fast_engine):
    make_pipeline(project, "tasks:\n  a: {steps: [{run: 'true'}]}\n  b: {needs: [a]}\n")
    build = run_build(project)
    moves = [
        (e.task_name, e.old_state, e.new_state)
        for e in build.events.filter(type="task.state").order_by("id")
    ]
    assert [m for m in moves if m[0] == "b"] == [
        ("b", "pending", "ready"),
        ("b", "ready", "queued"),
        ("b", "queued", "running"),
        ("b", "running", "succeeded"),
    ]
    builds = list(build.events.filter(type="build.state").values_list("new_state", flat=True))
    assert builds == ["queued", "running", "succeeded"]
