"""What the demo project holds: its pipelines, the `release-notes` prompt with its
dataset, and its first documents. Text only; `builds.demo.seed` writes it through the
services of each app."""

from __future__ import annotations

from typing import Any

PROJECT_SLUG = "demo"
PROJECT_NAME = "Demo project"
RELEASE_VERSION = "1.0.0"  # the `version` param of the release pipeline (and its document)

DEMO_PIPELINE = """\
name: demo
description: >-
  Runs offline in a few seconds; shows dependencies, logs, outputs, artifacts and the
  cache. Each task starts in a fresh workspace holding the artifacts of the tasks it needs.
params:
  version: "1.0.0"
resources: {cpu: 1}
tasks:
  checkout:
    steps:
      - run: |
          echo "preparing workspace for {{ params.version }}"
          mkdir -p src && printf 'print("hello from buildsite")\\n' > src/app.py
          echo "files: $(ls src)"
    artifacts: [src]
  lint:
    needs: [checkout]
    steps:
      - run: |
          for i in 1 2 3; do echo "lint pass $i"; sleep 1; done
          python3 -m py_compile src/app.py && echo "lint ok"
  test:
    needs: [checkout]
    retries: 1
    steps:
      - run: |
          for i in 1 2 3 4; do echo "test $i/4 ok"; sleep 1; done
          echo "4 passed"
        output: summary
  package:
    needs: [checkout, lint, test]
    cache: true
    inputs: [src/app.py]
    steps:
      - run: |
          mkdir -p dist
          tar --sort=name --mtime=@0 --owner=0 --group=0 -cf - src \\
            | gzip -n > dist/app-{{ params.version }}.tgz
          sha256sum dist/app-{{ params.version }}.tgz | cut -c1-16
        output: digest
    artifacts: [dist/]
  report:
    needs: [package]
    steps:
      - run: |
          echo "version {{ params.version }}"
          echo "package digest: {{ tasks.package.outputs.digest }}"
          tar tzf dist/app-{{ params.version }}.tgz
"""

# The tests are real (a small module and Python's unittest, run in the sandbox); their
# output is what the prompt drafts the notes from. The prompt step checks the answer
# against the version's response JSON schema (the prompt library retries with a repair
# message, then fails the task), so `publish` only ever sees notes of the right shape;
# the document step then validates the Markdown (links included) before publishing.
RELEASE_PIPELINE = """\
name: release
description: >-
  Tests, then release notes drafted by the prompt release-notes@production from the
  test output (the answer is checked against the prompt version's JSON schema), then
  published as the document releases/<version>.
params:
  version: "1.0.0"
resources: {cpu: 1}
tasks:
  tests:
    steps:
      - run: |
          mkdir -p tests
          cat > tests/test_versions.py <<'EOF'
          import unittest


          def bump(version, part):
              major, minor, patch = (int(n) for n in version.split("."))
              if part == "major":
                  return ".".join(map(str, (major + 1, 0, 0)))
              if part == "minor":
                  return ".".join(map(str, (major, minor + 1, 0)))
              return ".".join(map(str, (major, minor, patch + 1)))


          class BumpTest(unittest.TestCase):
              def test_patch(self):
                  self.assertEqual(bump("1.0.0", "patch"), "1.0.1")

              def test_minor_resets_patch(self):
                  self.assertEqual(bump("1.0.3", "minor"), "1.1.0")

              def test_major_resets_the_rest(self):
                  self.assertEqual(bump("1.4.2", "major"), "2.0.0")
          EOF
          python3 -m unittest discover -s tests -v 2>&1
        output: results
  notes:
    needs: [tests]
    steps:
      - prompt: release-notes@production
        vars:
          version: "{{ params.version }}"
          test_output: "{{ tasks.tests.outputs.results }}"
        output: notes
  publish:
    needs: [tests, notes]
    steps:
      - document: releases/{{ params.version }}
        title: Release {{ params.version }}
        tags: [release]
        publish: true
        body: |
          {{ tasks.notes.outputs.notes.summary }}

          ## Highlights

          {% for item in tasks.notes.outputs.notes.highlights | default([]) -%}
          - {{ item }}
          {% else -%}
          The notes list no highlights.
          {% endfor %}
          ## Tests

          ```text
          {{ tasks.tests.outputs.results }}
          ```

          Drafted by the prompt `release-notes@production` and checked against its JSON
          schema. In the demo the prompt runs on the offline provider, which answers
          deterministically without calling a model. See [Getting started](../getting-started).
"""

PIPELINES = {"demo": DEMO_PIPELINE, "release": RELEASE_PIPELINE}

# --- the prompt, its dataset and its gate -------------------------------------------------
PROMPT = "release-notes"
PROMPT_DESCRIPTION = "Drafts the release notes of a version from its test run (pipeline release)."
GATED_LABEL = "production"
DATASET = "release-notes"
MIN_PASS_RATE = 1.0  # the gate: every item of the dataset must pass

_VARIABLES = {
    "version": {"type": "string", "description": "the version being released"},
    "test_output": {"type": "string", "description": "what the test run printed"},
}

# Version 1: a summary and the highlights. `production` points at it.
PROMPT_V1: dict[str, Any] = {
    "template": (
        "Draft the release notes of version {{ version }} from the test run below.\n"
        'Answer with JSON: a one-sentence "summary" and the "highlights" a user of the\n'
        "release should know about (at most five).\n\n"
        "Test run:\n{{ test_output }}\n"
    ),
    "variables": _VARIABLES,
    "provider": "offline",
    "temperature": 0,
    "response_format": "json",
    "response_schema": {
        "type": "object",
        "required": ["summary", "highlights"],
        "properties": {
            "summary": {"type": "string", "minLength": 1, "maxLength": 300},
            "highlights": {
                "type": "array",
                "minItems": 1,
                "maxItems": 5,
                "items": {"type": "string", "minLength": 1},
            },
        },
        "additionalProperties": False,
    },
}

# Version 2 "shortens" the notes to a summary. The dataset's item 2 asks for highlights,
# so its evaluation passes 2 of 3 items and the gate on `production` refuses it.
PROMPT_V2: dict[str, Any] = {
    **PROMPT_V1,
    "template": (
        "Summarise version {{ version }} in one sentence for the release notes.\n"
        'Answer with JSON: {"summary": "..."}.\n\n'
        "Test run:\n{{ test_output }}\n"
    ),
    "response_schema": {
        "type": "object",
        "required": ["summary"],
        "properties": {"summary": {"type": "string", "minLength": 1, "maxLength": 300}},
        "additionalProperties": False,
    },
}
PROMPT_V2_NOTE = "shorter notes: a one-sentence summary, no highlights"

_HAS_SUMMARY = {
    "type": "json_schema",
    "schema": {
        "type": "object",
        "required": ["summary"],
        "properties": {"summary": {"type": "string", "minLength": 1}},
    },
}
_HAS_HIGHLIGHTS = {
    "type": "json_schema",
    "schema": {
        "type": "object",
        "required": ["highlights"],
        "properties": {"highlights": {"type": "array", "minItems": 1}},
    },
}
DATASET_DESCRIPTION = (
    "Test runs to draft release notes from. Every answer must be JSON with a summary; "
    "a release with a skipped test must also list highlights (item 2)."
)
DATASET_ITEMS: list[dict[str, Any]] = [
    {
        "variables": {
            "version": "1.0.0",
            "test_output": "test_patch ... ok\ntest_minor ... ok\n\nRan 2 tests in 0.001s\n\nOK",
        },
        "expect": [{"type": "is_json"}, _HAS_SUMMARY],
    },
    {
        "variables": {
            "version": "1.1.0",
            "test_output": (
                "test_patch ... ok\ntest_minor ... ok\n"
                "test_windows_paths ... skipped 'not on this platform'\n\n"
                "Ran 3 tests in 0.002s\n\nOK (skipped=1)"
            ),
        },
        "expect": [{"type": "is_json"}, _HAS_SUMMARY, _HAS_HIGHLIGHTS],
    },
    {
        "variables": {"version": "2.0.0", "test_output": "12 passed in 0.42s"},
        "expect": [{"type": "is_json"}, _HAS_SUMMARY],
    },
]

# --- documents ----------------------------------------------------------------------------
# Relative links between documents are checked when a document is saved (a link to a
# missing document refuses the save), so each page links only to pages before it in
# this list, which is the order they are written in. Links to other pages of the site
# (/p/demo/...) are not documents and are not checked.
DOCUMENTS: list[tuple[str, str, str]] = [
    (
        "prompts/overview",
        "Prompts of the demo",
        """\
The prompt [release-notes](/p/demo/prompts/release-notes/) has two versions:

- **#1** answers a summary and the highlights. The label `production` points at it,
  and the release pipeline runs `release-notes@production`.
- **#2** shortens the notes to a summary.

The dataset [release-notes](/p/demo/datasets/release-notes/) holds three test runs.
Every answer must be JSON with a summary; item 2, a release with a skipped test, must
also list highlights.

## The gate on production

`production` is gated: it moves only to a version whose evaluation on the dataset
passes every item (pass rate 1). The seed evaluated both versions. Version 1 passes 3
of 3; version 2 fails item 2, so pointing `production` at #2 is refused, with the
evaluation that fell short named in the message. A maintainer may force a move, with a
reason that the label history keeps.

## Try it

1. Open the prompt and save a new version (the form starts from the latest one).
2. Start an evaluation of it on `release-notes`.
3. Compare it with the evaluation of version 1 (**Evaluations**, then compare two).
4. Point `production` at it: the gate lets it through only with a pass rate of 1.

The demo uses the offline provider: it answers deterministically, with a value made
from the version's JSON schema, and calls no model. Add a real provider under
[Providers](/p/demo/prompts/_providers/) to try a model.
""",
    ),
    (
        "pipelines/overview",
        "Pipelines of the demo",
        """\
The demo project has two pipelines. Both run offline, in a few seconds.

## demo

`checkout` writes a small source tree and hands it to the tasks that need it as an
artifact; `lint` and `test` run side by side; `package` builds an archive and is cached
(run the pipeline twice and it comes from the cache); `report` prints what it received.
Open [the pipeline](/p/demo/pipelines/demo/) and run it to watch the graph, the
progress bar and the logs update live.

## release

1. `tests` runs a small unittest module in the sandbox and keeps what it printed as the
   output `results`.
2. `notes` runs the prompt `release-notes@production` with that output. The answer must
   match the JSON schema of the prompt version, or the task fails after the repairs the
   version allows.
3. `publish` writes the notes as the document `releases/<version>` and publishes it; the
   documentation engine validates the Markdown and its links first.

Each release document links back to the build that wrote it and to the prompt version
that drafted it. See [Prompts of the demo](../prompts/overview) for how that prompt is
evaluated.
""",
    ),
    (
        "getting-started",
        "Getting started",
        """\
This project is the demo Buildsite seeds on its first start. Everything in it runs
offline.

## What ran when you started

- The [release](/p/demo/pipelines/release/) pipeline tested a small module, asked the
  prompt `release-notes@production` for release notes and published them as
  [releases/1.0.0](/p/demo/docs/releases/1.0.0). The notes link to the build that wrote
  them and to the prompt version that drafted them.
- Both versions of the prompt [release-notes](/p/demo/prompts/release-notes/) were
  evaluated on their dataset. Version 2 fails one item, so the gate on `production`
  refuses it.
- The [demo](/p/demo/pipelines/demo/) pipeline ran once: dependencies, artifacts, logs
  and the cache.

## A walkthrough

1. Open [the builds](/p/demo/builds/) and the release build: every task is green.
2. Open the published notes and follow their links to the build and to the prompt
   version.
3. On the prompt page, save a new version, start an evaluation, and compare it with the
   evaluation of version 1.
4. Try to point `production` at version 2 and read why it is refused.

## Read more

- [Pipelines of the demo](pipelines/overview)
- [Prompts of the demo](prompts/overview)
""",
    ),
]
