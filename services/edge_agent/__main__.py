import sys

from services.cli import main

sys.exit(main(["edge-agent", *sys.argv[1:]]))
