"""The ``moa`` command line: ``ask``, ``chat``, ``serve``, ``models`` and ``eval``.

``app`` is the entry point and ``ask``/``chat``; ``options`` the options they share;
``display`` the live table; ``serve``, ``models`` and ``eval`` their commands.
"""
