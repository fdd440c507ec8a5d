#!/bin/sh
# Write the edge target from EDGE_HOST and EDGE_METRICS_PORT (the edge host's published port;
# empty EDGE_HOST: no edge target), then run Prometheus.
if [ -n "${EDGE_HOST}" ]; then
  printf -- '- targets: ["%s:%s"]\n' "${EDGE_HOST}" "${EDGE_METRICS_PORT:-9104}" > /prometheus/edge.yml
else
  echo '[]' > /prometheus/edge.yml
fi
exec /bin/prometheus --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prometheus
