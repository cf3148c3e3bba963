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
