# Two images from one file. The last stage, `production` (what `docker build .` makes), holds
# tally's own code only: no sandbox, tests, bench or devstack. `--target dev` adds the rest of
# the tree, for the sandbox in compose's dev profile.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
RUN useradd --system --uid 1000 tally && mkdir -p /metrics && chown tally /metrics

FROM base AS dev
COPY . .
USER tally
EXPOSE 8000 8001
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4"]

FROM base AS production
COPY manage.py flowerconfig.py ./
COPY config ./config
COPY paystack ./paystack
COPY ledger ./ledger
COPY webhooks ./webhooks
COPY tasks ./tasks
COPY voting ./voting
COPY ops ./ops
USER tally
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4"]
