"""The read-only dashboard (``oracle web``): view.py (pure), access.py (pure), server.py and service.py (the shell)."""
