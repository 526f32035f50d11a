# layered: the classic Dockerfile idiom. requirements.txt is copied on its own so the
# pip layer survives code changes; a change to the requirements re-downloads and rebuilds
# every package (no pip cache survives between builds).
FROM warpdrive/python-builder:3.11-bookworm
WORKDIR /opt/app-root/src
COPY requirements.txt .
RUN --mount=type=secret,id=ca \
    python3 -m venv /opt/venv \
    && PIP_CERT=/run/secrets/ca /opt/venv/bin/pip install --no-cache-dir --progress-bar off \
        --disable-pip-version-check -r requirements.txt
COPY . .
RUN if [ -f manage.py ]; then /opt/venv/bin/python manage.py collectstatic --noinput; fi
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["gunicorn", "--bind", "0.0.0.0:8080", "mysite.wsgi:application"]
