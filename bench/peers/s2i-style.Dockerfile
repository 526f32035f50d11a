# s2i-style: what source-to-image's assemble does, as one Dockerfile step. The source is
# copied first and everything (venv, pip install, collectstatic) happens in a single layer,
# so any change, even to one .py file, downloads and builds every package again.
FROM warpdrive/python-builder:3.11-bookworm
WORKDIR /opt/app-root/src
COPY . .
RUN --mount=type=secret,id=ca \
    python3 -m venv /opt/venv \
    && PIP_CERT=/run/secrets/ca /opt/venv/bin/pip install --no-cache-dir --progress-bar off \
        --disable-pip-version-check -r requirements.txt \
    && if [ -f manage.py ]; then /opt/venv/bin/python manage.py collectstatic --noinput; fi
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["gunicorn", "--bind", "0.0.0.0:8080", "mysite.wsgi:application"]
