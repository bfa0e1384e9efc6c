# The operator image: `zsp run` (the chart's command) on CPython, as uid/gid 65532.
#
#   docker build --build-arg GIT_COMMIT="$(git rev-parse HEAD)" -t ghcr.io/zsp-dev/zsp-operator:0.1.0 .
#
# Two stages from one pinned base: the build stage installs the package into a virtual
# environment; the runtime stage copies only that environment, so no compiler, pip cache or
# source tree ships. The runtime satisfies the chart's securityContext: a numeric non-root
# user (runAsNonRoot can check it), nothing written outside /tmp (readOnlyRootFilesystem; the
# bytecode is compiled at build time), no capabilities or setuid binaries needed.
# tests/test_dockerfile.py checks all of this statically.

# Both stages use the same base, written out (not through an ARG) so that scanners and update
# bots read the pin: the runtime's /usr/local/bin/python3.11 is the one the venv was made with.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# What the wheel is built from: the package, and the files it carries (operator/zsp_operator/
# bundled/ links to examples/ and deploy/operator-rbac.yaml).
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY examples/ examples/
COPY deploy/ deploy/
RUN python -m venv /opt/zsp \
 && /opt/zsp/bin/pip install --no-cache-dir . \
 && /opt/zsp/bin/python -m compileall -q /opt/zsp/lib \
 && /opt/zsp/bin/zsp version

FROM python:3.11.11-slim-bookworm AS runtime
ARG GIT_COMMIT=""
LABEL org.opencontainers.image.title="zsp-operator" \
      org.opencontainers.image.description="Zero standing privilege for non-human identities on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
# Drop the setuid/setgid bits the base carries: nothing here needs them, and with
# allowPrivilegeEscalation: false they could not be used anyway.
RUN find / -xdev -perm /6000 -type f -exec chmod a-s {} + \
 && groupadd --system --gid 65532 zsp \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin zsp
COPY --from=build /opt/zsp /opt/zsp
ENV PATH=/opt/zsp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    ZSP_GIT_COMMIT=${GIT_COMMIT}
# metrics, health, webhooks (charts/zsp-operator/values.yaml `ports`)
EXPOSE 8080 8081 9443
USER 65532:65532
WORKDIR /tmp
# For `docker run`; in Kubernetes the chart's probes ask the same endpoint (ports.health).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=4)"]
ENTRYPOINT ["zsp"]
CMD ["run"]
