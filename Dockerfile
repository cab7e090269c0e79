# Nonstop: the Slack bot that does not go offline.
#
#   docker build -t nonstop .
#   docker run -d --name nonstop --env-file nonstop.env -p 127.0.0.1:8080:8080 \
#       -v nonstop-state:/var/lib/nonstop --stop-timeout 30 --restart on-failure:3 nonstop
#
# See docs/operations.md ("Running under Docker").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY app.py ./
COPY nonstop/ ./nonstop/
COPY listeners/ ./listeners/

# An unprivileged user of its own; the code stays owned by root (read-only to the bot). The event
# ledger (acked, unfinished events survive a crash or a redeploy) lives on a volume the bot owns:
#   docker run ... -v nonstop-state:/var/lib/nonstop nonstop
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonstop \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/nonstop
VOLUME ["/var/lib/nonstop"]
ENV NONSTOP_LEDGER=sqlite:////var/lib/nonstop/nonstop-ledger.sqlite3
USER 10001:10001

# Inside the container the health server must listen on every interface to be reachable through -p;
# publish it on the host's loopback only (-p 127.0.0.1:8080:8080) unless a scraper elsewhere needs it.
ENV HEALTH_HOST=0.0.0.0 \
    HEALTH_PORT=8080 \
    LOG_FORMAT=json
EXPOSE 8080

# Liveness through /healthz with the standard library (the slim image has no curl); proxies bypassed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('HEALTH_PORT', '8080'), timeout=4)"]

# The graceful stop: drain in-flight handlers, close the links, exit 0. Give it more than the drain
# timeout (NONSTOP_DRAIN_TIMEOUT, 10 s) before the SIGKILL: docker run/stop --stop-timeout 30.
STOPSIGNAL SIGTERM

CMD ["python", "app.py"]
