"""``python -m sparsecap_cli``: the same command tree as the ``sparsecap`` executable (sweep cells run this way)."""

from sparsecap_cli.main import run

if __name__ == "__main__":
    run()
