"""``moa serve``: an OpenAI-compatible HTTP server for mixtures.

``app`` builds the Starlette app; ``guard`` refuses foreign hosts and origins;
``endpoints`` answers each route; ``runs`` and ``streams`` run a request and stream it;
``served`` holds the configs it serves; ``wire`` and ``wire_tools`` are OpenAI's wire
format (messages, answers, tools); ``errors`` are its error bodies.
"""
