"""Product events: ``track``, ``for_user``, ``capture_error``, auto events and their sink."""
