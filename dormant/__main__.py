"""``python -m dormant``: the same as the ``dormant`` command."""

from dormant.cli.main import run

if __name__ == "__main__":
    run()
