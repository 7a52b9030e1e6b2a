"""The JSON API, the payer's return from Paystack, and the voting pages (SPEC.md, HTTP)."""

from django.urls import path

from ledger import views

app_name = "ledger"

urlpatterns = [
    path("", views.contest_page, name="contest"),
    path("api/contestants/", views.api_contestants, name="api-contestants"),
    path("api/payments/", views.api_create_payment, name="api-payments"),
    path("api/payments/<str:reference>/", views.api_payment, name="api-payment"),
    # Before payments/<reference>/, which would otherwise take "callback" as a reference.
    path("payments/callback/", views.payment_callback, name="payment-callback"),
    path("payments/<str:reference>/", views.payment_page, name="payment-status"),
]
