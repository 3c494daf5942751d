# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/hashmatch hashmatch
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER hashmatch
WORKDIR /var/lib/hashmatch
ENV HASHMATCH_HOST=0.0.0.0 \
    HASHMATCH_PORT=8000 \
    HASHMATCH_DATA_DIR=/var/lib/hashmatch/index
VOLUME ["/var/lib/hashmatch/index"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"HASHMATCH_PORT\"]}/healthz')"
CMD ["hashmatch", "serve"]
