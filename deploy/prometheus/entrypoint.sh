#!/bin/sh
# Write the edge target from EDGE_HOST (empty: no edge target), then run Prometheus.
if [ -n "${EDGE_HOST}" ]; then
  printf -- '- targets: ["%s:9104"]\n' "${EDGE_HOST}" > /prometheus/edge.yml
else
  echo '[]' > /prometheus/edge.yml
fi
exec /bin/prometheus --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prometheus
