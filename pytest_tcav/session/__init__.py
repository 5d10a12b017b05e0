"""Names -> data: the session behind the ``tcav`` fixture, concept and input libraries, the registry."""
