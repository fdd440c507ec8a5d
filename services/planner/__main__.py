import sys

from common.runtime.service import entry
from services.planner import service

sys.exit(entry("dads planner", service))
