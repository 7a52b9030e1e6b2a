import json
from datetime import timedelta

import factory
from django.utils import timezone

from ledger.models import Contest, Contestant, Payment, VoteShard
from webhooks.models import Delivery


class ContestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contest

    name = factory.Sequence(lambda n: f"Contest {n}")
    slug = factory.Sequence(lambda n: f"contest-{n}")
    price_per_vote = 5000
    currency = "NGN"
    opens_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    closes_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=1))


class ContestantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contestant
        skip_postgeneration_save = True

    contest = factory.SubFactory(ContestFactory)
    name = factory.Sequence(lambda n: f"Act {n}")
    slug = factory.Sequence(lambda n: f"act-{n}")

    @factory.post_generation
    def votes(contestant: Contestant, create: bool, extracted: int | None, **kwargs) -> None:
        """`votes=N` starts the contestant with N votes (in shard 0), as if credited earlier."""
        if create and extracted:
            VoteShard.objects.create(contestant=contestant, shard=0, votes=extracted)


class PaymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Payment

    reference = factory.Sequence(lambda n: f"tly-test{n:08d}")
    contestant = factory.SubFactory(ContestantFactory)
    votes = 3
    amount = factory.LazyAttribute(lambda p: p.votes * p.contestant.contest.price_per_vote)
    currency = "NGN"
    email = factory.Sequence(lambda n: f"fan{n}@example.com")
    status = Payment.Status.PENDING
    # The database insists a flagged payment says why a person must look.
    attention = factory.LazyAttribute(
        lambda p: Payment.Attention.MISMATCH if p.status == Payment.Status.FLAGGED else ""
    )


class DeliveryFactory(factory.django.DjangoModelFactory):
    """A stored delivery as the endpoint writes it (status queued, not yet processed)."""

    class Meta:
        model = Delivery

    event = "charge.success"
    reference = factory.LazyAttribute(lambda d: d.payment.reference if d.payment else "")
    dedup_key = factory.Sequence(lambda n: f"{n:064d}")
    payload = factory.LazyAttribute(
        lambda d: {"event": d.event, "data": {"reference": d.reference}}
    )
    raw_body = factory.LazyAttribute(lambda d: json.dumps(d.payload))
    status = Delivery.Status.QUEUED

    class Params:
        payment = None
