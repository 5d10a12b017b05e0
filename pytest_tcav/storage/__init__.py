"""Where the engine's values are kept: in memory for a session, and on disk between runs.

:mod:`~pytest_tcav.storage.memory` holds the per-session store and the content
keys; :mod:`~pytest_tcav.storage.disk` the persistent store behind it, which
relies on :mod:`~pytest_tcav.storage.entry_format` (the bytes of one entry) and
:mod:`~pytest_tcav.storage.layout` (where entries live).  Nothing is imported
here, so that naming the package costs nothing (the plugin must load without torch).
"""
