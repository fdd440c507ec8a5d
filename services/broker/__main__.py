import sys

from common.runtime.service import entry
from services.broker import service

sys.exit(entry("dads broker", service))
