"""Configured callables (``tcav_transform``, ``tcav_tokenizer``), imported on their first call.

A run that never loads an image or a text never imports the user's module, so
a broken or heavy transform costs nothing to the tests that do not need it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class LazyCallable:
    """``load()`` is called once, on the first call; ``name`` is what error messages call it."""

    def __init__(self, name: str, load: Callable[[], Callable[[Any], Any] | None]) -> None:
        self.name = name  # the configured 'module:callable'
        self._load = load
        self._function: Callable[[Any], Any] | None = None

    def __call__(self, value: Any) -> Any:
        function = self._function
        if function is None:
            function = self._load()
            assert function is not None, f"built only when {self.name} is configured"
            self._function = function
        return function(value)
