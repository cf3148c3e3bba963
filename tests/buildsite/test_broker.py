"""Buildsite's SQL broker: the rows and meaning of django-q2's ORM broker, fewer writes."""

import threading

import pytest
from django.db import connection
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from buildsite.broker import SQLBroker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(monkeypatch):
    monkeypatch.setattr(Conf, "POLL", 0)
    monkeypatch.setattr(Conf, "BULK", 3)
    return SQLBroker(list_key="test-queue")


def payloads(claimed):
    return [payload for _, payload in claimed or []]


def test_jobs_come_out_in_order_at_most_bulk_at_a_time(broker):
    ids = [broker.enqueue(f"job-{i}") for i in range(5)]
    assert payloads(broker.dequeue()) == ["job-0", "job-1", "job-2"]
    assert payloads(broker.dequeue()) == ["job-3", "job-4"]
    assert broker.dequeue() is None  # claimed rows are locked, nothing else is due
    assert OrmQ.objects.filter(id__in=ids).count() == 5


def test_a_pusher_with_idle_workers_claims_no_more_than_it_asks_for(broker):
    for i in range(5):
        broker.enqueue(f"job-{i}")
    assert payloads(broker.dequeue(up_to=1)) == ["job-0"]
    assert payloads(broker.dequeue(up_to=2)) == ["job-1", "job-2"]
    assert payloads(broker.dequeue(up_to=9)) == ["job-3", "job-4"]  # never past bulk


def test_acknowledged_jobs_are_gone_and_others_stay(broker):
    first, second = broker.enqueue("a"), broker.enqueue("b")
    broker.dequeue()
    broker.acknowledge(first)
    assert list(OrmQ.objects.values_list("id", flat=True)) == [second]


def test_a_claim_whose_lock_ran_out_is_pulled_again(broker):
    job = broker.enqueue("lost")
    assert payloads(broker.dequeue()) == ["lost"]
    OrmQ.objects.filter(id=job).update(lock=timezone.now() - timezone.timedelta(seconds=1))
    assert payloads(broker.dequeue()) == ["lost"]


def test_other_queues_jobs_are_left_alone(broker):
    SQLBroker(list_key="other-queue").enqueue("not mine")
    assert broker.dequeue() is None
    assert broker.queue_size() == 0 and SQLBroker(list_key="other-queue").queue_size() == 1


def test_async_task_through_the_broker_stores_a_job_the_cluster_can_read(broker):
    async_task("builds.jobs.noop", 7, broker=broker, save=False)
    ((ack_id, payload),) = broker.dequeue()
    job = SignedPackage.loads(payload)
    assert (job["func"], job["args"], job["save"]) == ("builds.jobs.noop", (7,), False)
    assert OrmQ.objects.get(id=ack_id).key == "test-queue"


def test_racing_pushers_never_claim_one_job_twice(broker):
    for i in range(60):
        broker.enqueue(f"job-{i}")
    claimed, barrier = [], threading.Barrier(4)

    def pull():
        mine = SQLBroker(list_key="test-queue")
        barrier.wait()
        try:
            while batch := mine.dequeue():
                claimed.extend(payloads(batch))
        finally:
            connection.close()

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(f"job-{i}" for i in range(60))


def test_a_batch_of_jobs_goes_in_and_is_acknowledged_in_one_call_each(broker):
    broker.enqueue_many(["a", "b", "c", "d"])
    claimed = broker.dequeue()
    assert payloads(claimed) == ["a", "b", "c"]
    broker.acknowledge_many([ack_id for ack_id, _ in claimed])
    assert list(OrmQ.objects.values_list("payload", flat=True)) == ["d"]
    assert OrmQ.objects.get().key == "test-queue"


def test_a_pulled_job_is_leased_and_offered_again_when_the_lease_ends(broker, settings):
    """Leased, not popped: a host that dies holding the job does not lose it."""
    settings.BUILDSITE = {**settings.BUILDSITE, "LEASE_SECONDS": 30}
    job = broker.enqueue("job")
    before = timezone.now()
    assert payloads(broker.dequeue()) == ["job"]
    assert broker.dequeue() is None
    lock = OrmQ.objects.get(id=job).lock
    assert 29 <= (lock - before).total_seconds() <= 31
    OrmQ.objects.filter(id=job).update(lock=timezone.now())  # the lease is over
    assert payloads(broker.dequeue()) == ["job"]


def test_released_jobs_are_due_again_at_once(broker):
    first, second = broker.enqueue("a"), broker.enqueue("b")
    broker.dequeue()
    broker.release([first])
    assert payloads(broker.dequeue()) == ["a"]
    assert OrmQ.objects.filter(id__in=[first, second]).count() == 2
