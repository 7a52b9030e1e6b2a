"""Certified results (/results/<slug>/, .json, .csv) and the payer's receipt with its proof,
checked by the standalone script in docs/ (docs/results.md)."""

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from ledger import services
from ledger.models import Payment
from ledger.services import certify_contest, open_dispute, reverse_payment, settle_payment
from tests.factories import ContestantFactory, ContestFactory, PaymentFactory
from tests.helpers import success_for

pytestmark = pytest.mark.django_db

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "verify_receipt.py"


def credit(contestant, votes: int) -> Payment:
    payment = PaymentFactory(contestant=contestant, votes=votes)
    paid_at = contestant.contest.closes_at - timedelta(minutes=5)
    settle_payment(reference=payment.reference, verification=success_for(payment, paid_at=paid_at))
    return Payment.objects.get(pk=payment.pk)


def refund(payment: Payment) -> None:
    reverse_payment(
        reference=payment.reference, verification=success_for(payment, status="reversed")
    )


@pytest.fixture
def finale():
    """A closed contest: Ada 7 (one payment of 2 under dispute), Bola 3, one payment flagged."""
    now = timezone.now()
    contest = ContestFactory(
        slug="finale",
        name="Finale",
        opens_at=now - timedelta(days=3),
        closes_at=now - timedelta(hours=2),
    )
    ada = ContestantFactory(contest=contest, name="Ada", slug="ada")
    bola = ContestantFactory(contest=contest, name="Bola", slug="bola")
    payments = [credit(ada, 5), credit(ada, 2), credit(bola, 3)]
    open_dispute(reference=payments[1].reference, dispute_id="d-1", reminded=False)
    late = PaymentFactory(contestant=bola, votes=4)
    settle_payment(
        reference=late.reference, verification=success_for(late, paid_at=contest.closes_at)
    )
    return contest, ada, bola, payments


# --- the result ------------------------------------------------------------------------------


def test_the_results_page_shows_standings_root_and_flagged_payments(finale):
    contest, ada, bola, _ = finale
    certification = certify_contest(contest_id=contest.pk).certification

    response = Client().get("/results/finale/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Finale: certified result" in html
    assert html.index(f'id="line-{ada.id}"') < html.index(f'id="line-{bola.id}"')
    assert f'<span id="votes-{ada.id}">7</span>' in html
    assert f'id="share-{ada.id}">70.0%<' in html
    assert f'id="disputed-{ada.id}">(<span>2</span> under dispute)' in html
    assert f'<code class="hash" id="root">{certification.root}</code>' in html
    assert "1 payment flagged (paid after voting closed: refund)" in html
    assert 'href="/results/finale.json"' in html and 'href="/results/finale.csv"' in html
    assert 'id="certification-0"' in html


def test_an_amendment_is_listed_with_its_changes_and_both_roots(finale):
    contest, ada, _, payments = finale
    certification = certify_contest(contest_id=contest.pk).certification
    refund(payments[0])
    amendment = certify_contest(contest_id=contest.pk).certification

    html = Client().get("/results/finale/").content.decode()
    document = Client().get("/results/finale.json").json()

    assert "amended 1 time" in html
    assert html.index('id="certification-1"') < html.index('id="certification-0"')
    assert "1 ledger entry since the certification: 1 reversal (-5 votes)." in html
    assert "Totals: Ada -5." in html
    assert certification.root in html and amendment.root in html
    assert f'<span id="votes-{ada.id}">2</span>' in html
    assert (document["number"], document["kind"], document["root"]) == (
        1,
        "amendment",
        amendment.root,
    )
    assert [(c["number"], c["root"]) for c in document["certifications"]] == [
        (0, certification.root),
        (1, amendment.root),
    ]
    assert document["certifications"][0]["contestants"][0]["votes"] == 7  # as published then


def test_the_results_json_carries_the_result_and_every_certification(finale):
    contest, ada, bola, _ = finale
    certification = certify_contest(contest_id=contest.pk).certification

    document = Client().get("/results/finale.json").json()

    assert document["contest"] == {
        "slug": "finale",
        "name": "Finale",
        "opens_at": contest.opens_at.isoformat(),
        "closes_at": contest.closes_at.isoformat(),
        "price_per_vote": contest.price_per_vote,
        "currency": "NGN",
        "status": "certified",
    }
    assert (document["root"], document["entries"], document["number"]) == (
        certification.root,
        3,
        0,
    )
    assert document["contestants"] == [
        {"id": ada.id, "name": "Ada", "slug": "ada", "votes": 7, "votes_under_dispute": 2},
        {"id": bola.id, "name": "Bola", "slug": "bola", "votes": 3, "votes_under_dispute": 0},
    ]
    assert document["flagged_payments"] == {"paid_after_close": 1}
    assert len(document["certifications"]) == 1


def test_the_results_csv_has_one_ranked_row_per_contestant(finale):
    contest, *_ = finale
    root = certify_contest(contest_id=contest.pk).certification.root

    response = Client().get("/results/finale.csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["rank"], r["contestant"], r["votes"], r["share"]) for r in rows] == [
        ("1", "Ada", "7", "70.0%"),
        ("2", "Bola", "3", "30.0%"),
    ]
    assert {r["root"] for r in rows} == {root}
    assert rows[0]["votes_under_dispute"] == "2"


@pytest.mark.parametrize("suffix", ["/", ".json", ".csv"])
def test_a_result_not_certified_yet_or_unknown_is_404(finale, suffix):
    not_yet = Client().get(f"/results/finale{suffix}")
    unknown = Client().get(f"/results/nope{suffix}")

    assert (not_yet.status_code, unknown.status_code) == (404, 404)
    if suffix == "/":
        assert b"result not certified yet" in not_yet.content
        assert b"certified around" in not_yet.content
    if suffix == ".json":
        assert not_yet.json() == {"error": "the result is not certified yet"}
        assert unknown.json() == {"error": "unknown contest"}


def test_the_admin_shows_contests_with_status_and_their_certifications(finale, admin_client):
    contest, *_ = finale
    open_contest = ContestFactory(name="Still open")
    certify_contest(contest_id=contest.pk)

    listing = admin_client.get("/admin/ledger/contest/").content.decode()
    certified_only = admin_client.get("/admin/ledger/contest/?status=certified").content.decode()
    page = admin_client.get(f"/admin/ledger/contest/{contest.pk}/change/").content.decode()

    assert "certified" in listing and 'href="/results/finale/"' in listing
    assert "Still open" in listing and "Still open" not in certified_only
    assert "Certifications" in page
    assert 'name="closes_at_0"' not in page  # its window is read-only once certified
    assert 'name="contestants-0-name"' not in page  # and so are its contestants
    assert admin_client.get(f"/admin/ledger/contest/{open_contest.pk}/change/").status_code == 200


# --- receipts ---------------------------------------------------------------------------------


def test_a_receipt_before_certification_says_the_proof_comes_later(finale):
    _, _, _, payments = finale

    page = Client().get(f"/payments/{payments[0].reference}/").content.decode()
    receipt = Client().get(f"/payments/{payments[0].reference}/receipt.json").json()

    assert 'id="proof-pending"' in page
    assert receipt["certification"] is None and receipt["leaves"] == []
    assert receipt["entries_after_certification"] == 1


def test_a_receipts_proof_is_verified_by_the_standalone_script(finale, tmp_path, monkeypatch):
    monkeypatch.setattr(services, "RESULT_BLOCK_LEAVES", 2)  # proofs cross stored blocks
    contest, ada, _, payments = finale
    for _ in range(4):
        credit(ada, 1)
    certification = certify_contest(contest_id=contest.pk).certification
    payment = payments[1]

    page = Client().get(f"/payments/{payment.reference}/").content.decode()
    receipt_path = tmp_path / "receipt.json"
    receipt_path.write_bytes(Client().get(f"/payments/{payment.reference}/receipt.json").content)
    results_path = tmp_path / "results.json"
    results_path.write_bytes(Client().get("/results/finale.json").content)

    checked = run_script(receipt_path, "--results", results_path)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"PROVEN: payment {payment.reference} is in the result of finale" in checked.stdout
    assert f"credit of 2 votes for contestant {ada.id} is leaf 1 of 7" in checked.stdout
    assert certification.root in checked.stdout
    assert f'id="proof-root">{certification.root}<' in page
    assert f"{payment.reference}:credit:2:{ada.id}" in page
    assert "verify_receipt.py http://testserver/payments/" in page


def test_the_script_refuses_a_receipt_that_claims_more_votes(finale, tmp_path):
    contest, *_, payments = finale
    certify_contest(contest_id=contest.pk)
    receipt = Client().get(f"/payments/{payments[0].reference}/receipt.json").json()
    receipt["leaves"][0]["entry"]["votes"] = 50
    receipt_path = tmp_path / "receipt.json"
    receipt_path.write_text(json.dumps(receipt))

    checked = run_script(receipt_path)

    assert checked.returncode == 1
    assert "NOT PROVEN: leaf 0: its hash is not that of its entry" in checked.stdout


def test_the_script_refuses_a_root_that_is_not_the_published_one(finale, tmp_path):
    contest, *_, payments = finale
    certify_contest(contest_id=contest.pk)
    receipt_path = tmp_path / "receipt.json"
    receipt_path.write_bytes(
        Client().get(f"/payments/{payments[0].reference}/receipt.json").content
    )

    checked = run_script(receipt_path, "--root", "0" * 64)

    assert checked.returncode == 1
    assert "is not the published root" in checked.stdout


def test_a_refunded_payments_receipt_proves_its_credit_and_its_reversal(finale, tmp_path):
    contest, ada, _, payments = finale
    certify_contest(contest_id=contest.pk)
    refund(payments[0])
    amendment = certify_contest(contest_id=contest.pk).certification
    receipt_path = tmp_path / "receipt.json"
    receipt_path.write_bytes(
        Client().get(f"/payments/{payments[0].reference}/receipt.json").content
    )

    checked = run_script(receipt_path, "--root", amendment.root)

    assert checked.returncode == 0, checked.stdout
    assert f"credit of 5 votes for contestant {ada.id}" in checked.stdout
    assert f"reversal of -5 votes for contestant {ada.id}" in checked.stdout
    assert "(amendment 1)" in checked.stdout


def test_a_flagged_payments_receipt_has_no_leaf(finale):
    contest, _, bola, _ = finale
    certify_contest(contest_id=contest.pk)
    flagged = Payment.objects.get(contestant=bola, status="flagged")

    page = Client().get(f"/payments/{flagged.reference}/").content.decode()
    receipt = Client().get(f"/payments/{flagged.reference}/receipt.json").json()

    assert 'id="proof-none"' in page
    assert receipt["leaves"] == [] and receipt["certification"] is not None


@pytest.mark.parametrize("reference", ["tly-nosuchthing", "a%00b", "x" * 101])
def test_a_receipt_of_an_unknown_or_malformed_reference_is_404(reference):
    response = Client().get(f"/payments/{reference}/receipt.json")

    assert response.status_code == 404
    assert response.json() == {"error": "unknown reference"}


def run_script(*arguments: object) -> subprocess.CompletedProcess[str]:
    """docs/verify_receipt.py in its own Python, as a payer would run it: no tally, no Django."""
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
