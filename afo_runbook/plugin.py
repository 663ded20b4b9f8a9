"""pytest plugin (entry point `pytest11`): placeholder, being written."""
