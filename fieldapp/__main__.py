"""python -m fieldapp [--server URL] [--data DIR] [--lang zh|en]: the tablet app on a desktop."""
from __future__ import annotations

import sys

from fieldapp.config import parse_args

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    from fieldapp.ui.boot import prepare
    prepare(config.window_size)
    from fieldapp.ui.app import FieldApp  # Kivy starts a window on import: only once the arguments are good
    FieldApp(config).run()


if __name__ == "__main__":
    main(sys.argv[1:])
