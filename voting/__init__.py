"""The product fans use: contest pages, the JSON API, checkout and the payer's return."""
