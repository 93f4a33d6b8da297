# The controller image: a virtualenv built in one stage, copied into a slim runtime stage that
# runs as a non-root user and writes only to the volumes the Deployment mounts.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/autotuner
# The dependencies exactly as locked, each checked against its hashes; then autotuner itself,
# which brings no other.
COPY requirements.lock ./
RUN /opt/autotuner/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY autotuner ./autotuner
RUN /opt/autotuner/bin/pip install --no-cache-dir --no-deps . \
 && find /opt/autotuner -name '__pycache__' -type d -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="autotuner" \
      org.opencontainers.image.description="Self-tuning performance controller" \
      org.opencontainers.image.licenses="Apache-2.0"
# Nothing is written under the (read-only) root filesystem: bytecode is not cached, and the
# audit file and matplotlib's cache go to the volumes at /var/lib/autotuner and /tmp.
ENV PATH=/opt/autotuner/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    AUTOTUNER_RULES=/etc/autotuner/rules \
    AUTOTUNER_DATABASE_URL=sqlite:////var/lib/autotuner/audit.sqlite
RUN groupadd --system --gid 10001 autotuner \
 && useradd --system --uid 10001 --gid autotuner --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin autotuner \
 && mkdir -p /etc/autotuner/rules /var/lib/autotuner \
 && chown autotuner:autotuner /var/lib/autotuner
COPY --from=build /opt/autotuner /opt/autotuner
COPY rules /etc/autotuner/rules
WORKDIR /var/lib/autotuner
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["autotuner"]
CMD ["run"]
