"""The voting pages, the JSON API and the payer's return (docs/contract.md, HTTP)."""

from django.urls import path

from voting import api, pages

app_name = "voting"

urlpatterns = [
    path("", pages.contest_page, name="contest"),
    path("api/contestants/", api.api_contestants, name="api-contestants"),
    path("api/payments/", api.api_create_payment, name="api-payments"),
    path("api/payments/<str:reference>/", api.api_payment, name="api-payment"),
    # Before payments/<reference>/, which would otherwise take "callback" as a reference.
    path("payments/callback/", pages.payment_callback, name="payment-callback"),
    path("payments/<str:reference>/", pages.payment_page, name="payment-status"),
]
