"""The demo project `make run` seeds: a pipeline that runs offline in a few seconds."""

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
