import sys

from services.cli import main

sys.exit(main(["broker", *sys.argv[1:]]))
