"""Launcher so that ``python cli.py ...`` works from a checkout."""
from fastifkl.cli import main

main()
