"""Search benchmark: 100,000 documents and 100,000 log chunks on the embedded default
(SQLite + FTS5).

    .venv/bin/python bench/search.py [--docs 100000] [--logs 100000] [--queries 350]

Builds a throwaway database in a temp dir (never your data), fills it with synthetic
documents whose words follow a Zipf distribution (like real text: a few very common
words, a long tail of rare ones), then times `selectors.search_documents` - the code
behind GET /api/projects/{slug}/search - over a mix of common, rare, two-word, phrase,
prefix and filtered queries, and, in the same run, an `icontains` scan that finds the
documents containing a word (title or body) without the index.

The same database also holds `--logs` task-log chunks (~150 words each, log-like lines
over the same vocabulary, in 1,000 builds), as the upkeep indexer writes them; the same
query mix is then timed on the logs (`in=logs`) and on both (`in=docs,logs`).

Prints p50/p95/max of each and the ratio; targets: document search p95 <= 50 ms with
the logs present, >= 20x faster than the scan.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYLLABLES = [
    "ba", "ke", "ti", "do", "ru", "mo", "sa", "ne", "li", "po", "va", "zu", "ga", "fe",
    "ri", "lo", "mi", "da", "ko", "te", "nu", "si", "pa", "re", "to", "la", "ve", "no",
]  # fmt: skip
REAL = [
    "install", "build", "pipeline", "server", "deploy", "release", "cache", "worker",
    "config", "search", "document", "token", "project", "docker", "python", "error",
]  # fmt: skip
TAGS = [f"tag{i}" for i in range(20)]


def setup_django(tmp: str) -> None:
    os.environ["BUILDSITE_DATA_DIR"] = tmp
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("BUILDSITE_SQLITE_PATH", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildsite.settings")
    os.environ.setdefault("BUILDSITE_LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def vocabulary(rng: random.Random, size: int) -> list[str]:
    words: list[str] = list(REAL)
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def fill(count: int, rng: random.Random, words: list[str]):
    from django.db import transaction
    from django.utils import timezone

    from buildsite.services import create_project
    from docs_engine.models import Document, SearchEntry
    from tests.factories import make_user

    user = make_user("bench")
    project = create_project(creator=user, slug="bench", name="Bench")
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    now = timezone.now()
    batch = 5_000
    started = time.perf_counter()
    for first in range(0, count, batch):
        n = min(batch, count - first)
        drawn = rng.choices(words, cum_weights=cumulative, k=n * 125)
        with transaction.atomic():
            docs = Document.objects.bulk_create(
                Document(
                    project=project,
                    path=f"section-{(first + i) % 200}/doc-{first + i}",
                    title=" ".join(drawn[i * 125 : i * 125 + 5]).capitalize(),
                    tags=rng.sample(TAGS, 2),
                    updated_at=now - timedelta(minutes=first + i),
                    updated_by=user,
                )
                for i in range(n)
            )
            SearchEntry.objects.bulk_create(
                SearchEntry(
                    document=doc,
                    title=doc.title,
                    body=" ".join(drawn[i * 125 + 5 : (i + 1) * 125]),
                    tags=" ".join(doc.tags),
                )
                for i, doc in enumerate(docs)
            )
        print(f"\r  {first + n:>7} documents", end="", flush=True)
    print(f"  ({time.perf_counter() - started:.0f}s)")
    return project, drawn


LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]


def fill_logs(count: int, rng: random.Random, words: list[str], project) -> None:
    """`count` chunks as search/services.py writes them (the FTS5 triggers index them)."""
    from django.db import transaction
    from django.utils import timezone

    from builds.models import Build
    from builds.services import save_pipeline
    from search.models import LogChunk
    from search.services import log_title

    if not count:
        return
    version = save_pipeline(
        user=None,
        project=project,
        name="bench",
        definition="tasks:\n  t: {steps: [{run: 'true'}]}\n",
    )
    builds = Build.objects.bulk_create(
        Build(project=project, pipeline=version.pipeline, state="succeeded") for _ in range(1_000)
    )
    tasks = ["compile", "test", "lint", "package", "deploy"]
    cumulative, total = [], 0.0
    for rank in range(len(words)):
        total += 1.0 / (rank + 1)
        cumulative.append(total)
    now = timezone.now()
    batch = 5_000
    started = time.perf_counter()
    for first in range(0, count, batch):
        n = min(batch, count - first)
        drawn = rng.choices(words, cum_weights=cumulative, k=n * 120)
        chunks = []
        for i in range(n):
            build = builds[(first + i) % len(builds)]
            task = tasks[(first + i) // len(builds) % len(tasks)]
            lines = []
            for line in range(12):  # 12 lines of a timestamp, a level and 10 words
                at = i * 120 + line * 10
                lines.append(
                    f"12:{line:02d}:{rng.randrange(60):02d} {rng.choice(LEVELS)} "
                    + " ".join(drawn[at : at + 10])
                    + f" ({rng.randrange(10_000)} ms)"
                )
            chunks.append(
                LogChunk(
                    project=project,
                    build=build,
                    task_name=task,
                    attempt=1,
                    title=log_title("bench", build.id, task, 1),
                    body="\n".join(lines) + "\n",
                    last_event_id=first + i,
                    created_at=now,
                )  # fmt: skip
            )
        with transaction.atomic():
            LogChunk.objects.bulk_create(chunks, batch_size=1_000)
        print(f"\r  {first + n:>7} log chunks", end="", flush=True)
    print(f"  ({time.perf_counter() - started:.0f}s)")


def queries(rng: random.Random, words: list[str], sample_text: list[str], n: int):
    common, middle, rare = words[:50], words[50:2_000], words[5_000:]
    made = []
    for i in range(n):
        kind = i % 7
        if kind == 0:
            made.append(({"q": rng.choice(common)}, "common word"))
        elif kind == 1:
            made.append(({"q": rng.choice(middle)}, "mid word"))
        elif kind == 2:
            made.append(({"q": rng.choice(rare)}, "rare word"))
        elif kind == 3:
            made.append(({"q": f"{rng.choice(common)} {rng.choice(middle)}"}, "two words"))
        elif kind == 4:
            at = rng.randrange(len(sample_text) - 2)
            made.append(({"q": f'"{sample_text[at]} {sample_text[at + 1]}"'}, "phrase"))
        elif kind == 5:
            made.append(({"q": rng.choice(middle)[:3] + "*"}, "prefix"))
        else:
            made.append(
                (
                    {"q": rng.choice(middle), "tag": rng.choice(TAGS), "prefix": "section-7"},
                    "word + tag + path filters",
                )
            )
    return made


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def timed(plan, run) -> tuple[dict[str, list[float]], list[float]]:
    for params, _ in plan[:20]:  # warm the page cache
        run(params)
    timings: dict[str, list[float]] = {}
    all_ms: list[float] = []
    for params, kind in plan:
        started = time.perf_counter()
        run(params)
        ms = (time.perf_counter() - started) * 1000
        timings.setdefault(kind, []).append(ms)
        all_ms.append(ms)
    return timings, all_ms


def report(title: str, timings: dict[str, list[float]], all_ms: list[float]) -> float:
    print(f"\n{title}, {len(all_ms)} queries (limit 20):")
    for kind, values in timings.items():
        print(
            f"  {kind:<26} p50 {statistics.median(values):7.2f} ms"
            f"   p95 {percentile(values, 95):7.2f} ms"
        )
    p95 = percentile(all_ms, 95)
    print(
        f"  {'ALL':<26} p50 {statistics.median(all_ms):7.2f} ms   p95 {p95:7.2f} ms"
        f"   max {max(all_ms):7.2f} ms"
    )
    return p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=350)
    parser.add_argument("--scans", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="buildsite-bench-") as tmp:
        setup_django(tmp)
        from django.db import connection
        from django.db.models import Q

        from docs_engine.models import Document
        from search.selectors import search

        words = vocabulary(rng, 20_000)
        print(f"filling {args.docs} documents (~120 words each, Zipf over {len(words)} words)")
        project, sample_text = fill(args.docs, rng, words)
        print(f"filling {args.logs} log chunks (~150 words each)")
        fill_logs(args.logs, rng, words, project)
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA optimize")
        plan = queries(rng, words, sample_text, args.queries)
        # The code behind GET /api/projects/{slug}/search, for each `in`.
        docs_t, docs_ms = timed(plan, lambda p: search(project=project, limit=20, **p))
        log_plan = [(p, kind) for p, kind in plan if "tag" not in p]  # no doc filters
        logs_t, logs_ms = timed(
            log_plan, lambda p: search(project=project, kinds=("logs",), limit=20, **p)
        )
        both_t, both_ms = timed(
            log_plan, lambda p: search(project=project, kinds=("docs", "logs"), limit=20, **p)
        )
        scan_ms: list[float] = []
        scan_words = [rng.choice(words[:2_000]) for _ in range(args.scans)]
        for word in scan_words:
            started = time.perf_counter()
            list(
                Document.objects.filter(project=project, deleted_at__isnull=True)
                .filter(Q(title__icontains=word) | Q(search_entry__body__icontains=word))
                .values_list("id", flat=True)
            )
            scan_ms.append((time.perf_counter() - started) * 1000)
        p95 = report(
            f"documents (in=docs) over {args.docs} documents + {args.logs} log chunks",
            docs_t,
            docs_ms,
        )
        logs_p95 = report(f"task logs (in=logs) over {args.logs} log chunks", logs_t, logs_ms)
        both_p95 = report("documents and logs (in=docs,logs)", both_t, both_ms)
        scan_p50, scan_p95 = statistics.median(scan_ms), percentile(scan_ms, 95)
        print(
            f"\nicontains scan, {len(scan_ms)} words: p50 {scan_p50:.1f} ms   p95 {scan_p95:.1f} ms"
        )
        print(
            f"ratio icontains/search: p50 {scan_p50 / statistics.median(docs_ms):.0f}x   "
            f"p95 {scan_p95 / p95:.0f}x"
        )
        print(f"logs p95 {logs_p95:.2f} ms, docs+logs p95 {both_p95:.2f} ms")
        verdict = "PASS" if p95 <= 50 and scan_p95 / p95 >= 20 else "MISS"
        print(f"targets (document search p95 <= 50 ms with logs present, >= 20x): {verdict}")


if __name__ == "__main__":
    main()
