# syntax=docker/dockerfile:1
# tutorledger: one image for every process; the compose services pick the subcommand
# (`serve`, `relay`, `project`, ...). Build: docker build -t tutorledger:0.1.0 .

# --- build: install the project's wheel and its dependencies into a self-contained venv ---
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
# The release path the tests check (tests/e2e/installed.py): sdist, wheel from it, install.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip "build>=1.2,<2" \
    && sh infra/docker/install-wheel.sh /src /tmp/dist /opt/venv/bin/python \
    && tutorledger --help >/dev/null

# --- runtime: slim base + venv, no compilers, non-root ---
FROM python:3.11.11-slim-bookworm
# libpq5: eventsourcing[postgres] uses pure-Python psycopg 3, which loads libpq at runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tutorledger \
    && useradd --system --uid 10001 --gid tutorledger --no-create-home \
       --home-dir /var/lib/tutorledger --shell /usr/sbin/nologin tutorledger \
    && install -d -o tutorledger -g tutorledger -m 0750 /var/lib/tutorledger
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 infra/docker/healthcheck.py /usr/local/bin/tutorledger-healthcheck
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TUTORLEDGER_VAR_DIR=/var/lib/tutorledger
WORKDIR /var/lib/tutorledger
USER tutorledger:tutorledger
EXPOSE 8000
ENTRYPOINT ["tutorledger"]
CMD ["--help"]
