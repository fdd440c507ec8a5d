import sys

from services.cli import main

sys.exit(main(["planner", *sys.argv[1:]]))
