# buildkit-cache: layered, plus a BuildKit cache mount for pip's cache, so a change to the
# requirements reuses downloaded files and locally built wheels (psycopg2) from earlier
# builds. The cache never ends up in the image. CACHE_ID names the cache mount: the bench
# gives every run its own, so a cold build really starts with an empty pip cache.
FROM warpdrive/python-builder:3.11-bookworm
ARG CACHE_ID=pip
WORKDIR /opt/app-root/src
COPY requirements.txt .
RUN --mount=type=cache,id=${CACHE_ID},target=/root/.cache/pip \
    --mount=type=secret,id=ca \
    python3 -m venv /opt/venv \
    && PIP_CERT=/run/secrets/ca /opt/venv/bin/pip install --progress-bar off \
        --disable-pip-version-check -r requirements.txt
COPY . .
RUN if [ -f manage.py ]; then /opt/venv/bin/python manage.py collectstatic --noinput; fi
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["gunicorn", "--bind", "0.0.0.0:8080", "mysite.wsgi:application"]
