import sys

from common.runtime.service import entry
from services.edge_agent import service

sys.exit(entry("dads edge-agent", service))
