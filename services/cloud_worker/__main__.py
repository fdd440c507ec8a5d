import sys

from common.runtime.service import entry
from services.cloud_worker import service

sys.exit(entry("dads cloud-worker", service))
