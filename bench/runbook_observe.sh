#!/usr/bin/env bash
# Section 1 of the runbook (AFO_OPERATIONS_RUNBOOK.ko.md), the commands exactly as written,
# for bench/observe_bench.py to time against `pytest -m observe` on the same stack.
# The bench substitutes the three ports only when the runbook's own ports are taken.

# 1.1 health (10 s)
curl -sS http://localhost:8010/api/health &
curl -sS http://localhost:8001/health &
curl -sS http://localhost:3000/ &
wait

# 1.2 security guard (20 s)
curl -sS http://localhost:8010/api/revalidate/status &
curl -sS -H "X-Internal-Secret: WRONG" http://localhost:8010/api/revalidate/status &
curl -sS -H "X-Internal-Secret: ${AFO_INTERNAL_SECRET}" http://localhost:8010/api/revalidate/status &
wait

# 1.3 SSE stream (20 s)
curl -sS -N --max-time 10 "http://localhost:8010/api/thoughts/sse" > /tmp/sse_check.txt || true
wc -c < /tmp/sse_check.txt

# 1.4 containers (10 s)
docker ps --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'
