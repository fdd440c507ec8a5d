import sys

from services.cli import main

sys.exit(main(["cloud-worker", *sys.argv[1:]]))
