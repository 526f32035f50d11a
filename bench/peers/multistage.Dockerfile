# multistage: wheels are built in the builder image (with a pip cache mount), and the final
# image starts from the slim runtime image and installs them offline from a bind mount of
# the builder stage, so neither the compilers nor the wheels end up in the image.
# CACHE_ID names the cache mount (see buildkit-cache.Dockerfile).
FROM warpdrive/python-builder:3.11-bookworm AS builder
ARG CACHE_ID=pip
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,id=${CACHE_ID},target=/root/.cache/pip \
    --mount=type=secret,id=ca \
    python3 -m venv /tmp/pip-venv \
    && PIP_CERT=/run/secrets/ca /tmp/pip-venv/bin/pip wheel --progress-bar off \
        --disable-pip-version-check -r /tmp/requirements.txt -w /wheels

FROM warpdrive/python:3.11-bookworm
WORKDIR /opt/app-root/src
COPY requirements.txt .
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels \
        --progress-bar off --disable-pip-version-check -r requirements.txt
COPY . .
RUN if [ -f manage.py ]; then /opt/venv/bin/python manage.py collectstatic --noinput; fi
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["gunicorn", "--bind", "0.0.0.0:8080", "mysite.wsgi:application"]
