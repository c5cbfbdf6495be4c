# fastgate in a slim image, running as a non-root user. The wheel is built in
# the full image, which has a C compiler for the speedups (setup.py); the slim
# image installs it without one. hadolint checks this file, and
# tests/deploy/test_container.py does what it does, step by step, outside a container.
FROM python:3.11 AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY fastgate ./fastgate
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN groupadd --system --gid 10001 fastgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /srv/fastgate fastgate
WORKDIR /srv/fastgate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels /root/.cache \
    && fastgate -V | grep -q "C speedups: counts, jsonline, table)"
COPY conf/gate.conf /etc/fastgate/gate.conf
RUN sed -i 's|^pid_file = .*|pid_file = "/tmp/fastgate.pid"|' /etc/fastgate/gate.conf

USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGQUIT
# The admin listener's /healthz (conf/gate.conf puts it on 127.0.0.1:9901); a config that moves
# the admin listener needs its own HEALTHCHECK.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["fastgate"]
CMD ["-c", "/etc/fastgate/gate.conf"]
