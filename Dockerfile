# One image for every role: `woofleet webhook`, `woofleet consume NAME`, `woofleet topology apply`.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/woofleet
WORKDIR /src
COPY . .
RUN /opt/woofleet/bin/pip install .

FROM python:3.11-slim
# pip compiled the byte-code at install, so nothing writes beside the code at run time.
ENV PATH=/opt/woofleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user, so Kubernetes can verify runAsNonRoot without resolving names.
RUN groupadd --system --gid 10001 woofleet \
 && useradd --system --uid 10001 --gid woofleet --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin woofleet \
 && mkdir -p /app/var \
 && chown 10001:10001 /app/var
COPY --from=build /opt/woofleet /opt/woofleet
WORKDIR /app
# The root filesystem may be read-only: the only writable paths are /app/var (state, invoices,
# dev mail on the embedded defaults) and /tmp; mount an emptyDir or tmpfs at each.
USER 10001:10001
EXPOSE 8080 9100
ENTRYPOINT ["woofleet"]
CMD ["--help"]
