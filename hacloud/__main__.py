"""``python -m hacloud``."""

from hacloud.cli import main

main()
