# syntax=docker/dockerfile:1
# hoodyexec container image: the kit's venv built from pyproject.toml (every
# runtime dependency pinned exactly there), run as a non-root user, <home> on a
# volume, bound to 0.0.0.0:8080. The kit refuses to bind beyond loopback without
# a management token, so the container needs HOODYEXEC_TOKEN at run time (never
# baked in here); see docs/scale-out.md.
#
#   docker build -t hoodyexec:0.1.0 .
#   docker run -e HOODYEXEC_TOKEN=... -p 8080:8080 -v hoodyexec-home:/var/lib/hoodyexec hoodyexec:0.1.0

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hoodyexec ./hoodyexec
COPY workers ./workers
# A regular (not editable) install into the venv the runtime stage copies as is.
RUN python -m venv /opt/hoodyexec/venv \
 && /opt/hoodyexec/venv/bin/pip install /src \
 && /opt/hoodyexec/venv/bin/hoodyexec --version

FROM ${PYTHON_IMAGE}
ARG UID=10001
RUN groupadd --system --gid "${UID}" hoodyexec \
 && useradd --system --uid "${UID}" --gid hoodyexec --home-dir /var/lib/hoodyexec \
      --no-create-home --shell /usr/sbin/nologin hoodyexec \
 && install -d -o hoodyexec -g hoodyexec -m 0700 /var/lib/hoodyexec
COPY --from=build /opt/hoodyexec/venv /opt/hoodyexec/venv
COPY conf/gunicorn.conf.py /opt/hoodyexec/conf/gunicorn.conf.py
COPY deploy/healthcheck.py /opt/hoodyexec/healthcheck.py
ENV PATH=/opt/hoodyexec/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/hoodyexec \
    HOODYEXEC_HOME=/var/lib/hoodyexec \
    HOODYEXEC_BIND=0.0.0.0:8080
# scripts/, logs/, run/, the SQLite state and kit-local packages.
VOLUME ["/var/lib/hoodyexec"]
WORKDIR /var/lib/hoodyexec
# Numeric, so Kubernetes can check runAsNonRoot against the image.
USER 10001:10001
EXPOSE 8080
# SIGTERM: the master drains in-flight requests for graceful-timeout, then exits.
STOPSIGNAL SIGTERM
# "live": the kit answers health (200 ok, or 503 starting/draining). A draining
# node is still alive; only a kit that does not answer is unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/opt/hoodyexec/healthcheck.py", "live"]
ENTRYPOINT ["hoodyexec"]
CMD ["serve"]
