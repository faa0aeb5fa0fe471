"""``python -m lens`` is ``lens-fast``."""
from lens.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
