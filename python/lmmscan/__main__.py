"""``python -m lmmscan``: the same as the ``lmmscan`` command."""

from .cli import run

if __name__ == "__main__":
    run()
