"""Launcher so that ``python cli.py ...`` works from a checkout."""
from fastifkl.cli import main

if __name__ == "__main__":  # worker processes (spawn / forkserver) re-import this file: no second run
    main()
