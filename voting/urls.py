"""The voting pages, the JSON API, certified results and the payer's return
(docs/contract.md, HTTP)."""

from django.urls import path

from voting import api, pages, results

app_name = "voting"

urlpatterns = [
    path("", pages.home_page, name="home"),
    path("c/<slug:slug>/", pages.contest_page, name="contest"),
    # A slug has no '.', so "<slug>.json" can only be the JSON form.
    path("results/<slug:slug>/", results.results_page, name="results"),
    path("results/<slug:slug>.json", results.results_json, name="results-json"),
    path("results/<slug:slug>.csv", results.results_csv, name="results-csv"),
    path("api/contests/", api.api_contests, name="api-contests"),
    path(
        "api/contests/<slug:slug>/contestants/",
        api.api_contest_contestants,
        name="api-contest-contestants",
    ),
    path("api/contestants/", api.api_contestants, name="api-contestants"),
    path("api/payments/", api.api_create_payment, name="api-payments"),
    path("api/payments/<str:reference>/", api.api_payment, name="api-payment"),
    # Before payments/<reference>/, which would otherwise take "callback" as a reference.
    path("payments/callback/", pages.payment_callback, name="payment-callback"),
    path("payments/<str:reference>/receipt.json", results.receipt_json, name="payment-receipt"),
    path("payments/<str:reference>/", pages.payment_page, name="payment-status"),
]
