# uv: what uv's Docker guide recommends (docs/guides/integration/docker.md and its
# uv-docker-example repo's multistage Dockerfile), for a requirements.txt app. uv itself
# comes from the package index (pip install uv; nothing is pulled from ghcr.io here). Its
# cache is a BuildKit cache mount on /root/.cache/uv, copied from (UV_LINK_MODE=copy: the
# cache and the venv are on different filesystems), the requirements are bind-mounted
# rather than copied, and the bytecode is compiled at build time. The venv is made in the
# builder image and copied into the slim runtime image at the same path, with the same
# interpreter (/usr/bin/python3 in both), and the app runs as a non-root user.
# CACHE_ID names the cache mount (see buildkit-cache.Dockerfile).
FROM warpdrive/python-builder:3.11-bookworm AS builder
ARG CACHE_ID=uv
RUN --mount=type=secret,id=ca \
    python3 -m venv /opt/uv \
    && PIP_CERT=/run/secrets/ca /opt/uv/bin/pip install --no-cache-dir --progress-bar off \
        --disable-pip-version-check uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=0
RUN --mount=type=cache,id=${CACHE_ID},target=/root/.cache/uv \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    --mount=type=secret,id=ca \
    /opt/uv/bin/uv venv --python /usr/bin/python3 /opt/venv \
    && SSL_CERT_FILE=/run/secrets/ca /opt/uv/bin/uv pip install --python /opt/venv/bin/python \
        -r /tmp/requirements.txt

FROM warpdrive/python:3.11-bookworm
RUN groupadd --system --gid 999 nonroot \
    && useradd --system --gid 999 --uid 999 --create-home nonroot \
    && mkdir -p /opt/app-root/src \
    && chown nonroot:nonroot /opt/app-root/src
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
WORKDIR /opt/app-root/src
COPY --chown=nonroot:nonroot . .
USER nonroot
RUN if [ -f manage.py ]; then /opt/venv/bin/python manage.py collectstatic --noinput; fi
EXPOSE 8080
CMD ["gunicorn", "--bind", "0.0.0.0:8080", "mysite.wsgi:application"]
