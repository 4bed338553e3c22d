# One image for every Waveline service: `waveline run <service>` picks the role, so the five
# services (and the migrate/topics job) always run exactly the same code and dependencies.
#
#   docker build -t waveline:local .
#   docker run --rm waveline:local --help
#
# Deliberately avoids BuildKit-only syntax (RUN --mount, heredocs) so it also builds with the
# classic builder that docker-compose v1 drives.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build stage: resolve and install into a self-contained virtualenv -------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so editing source code does not re-download
# faststream/pygit2/asyncpg on every build. Every dependency ships manylinux wheels (pygit2
# bundles libgit2), so no compiler or -dev packages are needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --upgrade pip \
    && pip install -r /tmp/requirements.txt

# The package itself. `waveline/services` and `waveline/shared` are symlinks to the top-level
# folders; COPY keeps them as symlinks and they resolve because the whole tree is copied.
COPY . .
RUN pip install --no-deps . \
    && pip check

# ---- runtime stage --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# Fixed numeric UID/GID: Kubernetes `runAsNonRoot` can only verify a numeric user, and the
# manifests' fsGroup makes volumes writable for exactly this id.
ARG WAVELINE_UID=10001
# Mount points must exist, owned by the service user, *in the image*: a fresh named volume copies
# the ownership of the directory it is mounted on, while a missing one is created root-owned.
#   data     - git-writer's persistent bare clones (WAVELINE_DATA_DIR)
#   remotes  - optional file:// config repositories (local demo, tests)
# Signed commits (repos.<r>.signing, docs/security.md) sign as git does: ssh-keygen or gpg.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client gnupg \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid "${WAVELINE_UID}" waveline \
    && useradd --system --uid "${WAVELINE_UID}" --gid waveline \
         --home-dir /var/lib/waveline --no-create-home --shell /usr/sbin/nologin waveline \
    && mkdir -p /var/lib/waveline/data /var/lib/waveline/remotes /etc/waveline \
    && chown -R waveline:waveline /var/lib/waveline

COPY --from=build /opt/venv /opt/venv

# SSL_CERT_*: libgit2 inside the pygit2 wheel carries its own OpenSSL, whose compiled-in CA path
#   may not be Debian's; OpenSSL honours these variables, so https remotes verify against the
#   system CAs.
# WAVELINE_HTTP_HOST: inside a container the ingest must listen beyond loopback (the port mapping
#   or Service decides who can reach it); outside containers the code's default stays 127.0.0.1.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_DIR=/etc/ssl/certs \
    WAVELINE_HTTP_HOST=0.0.0.0 \
    WAVELINE_HTTP_PORT=8080 \
    WAVELINE_CONFIG=/etc/waveline/waveline.yaml \
    WAVELINE_DATA_DIR=/var/lib/waveline/data

USER ${WAVELINE_UID}:${WAVELINE_UID}
WORKDIR /var/lib/waveline

# Only ingest listens; the other services need no ports.
EXPOSE 8080

ENTRYPOINT ["waveline"]
CMD ["run", "all"]
