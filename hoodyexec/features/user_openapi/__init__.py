"""User OpenAPI: the OpenAPI document of an instance's scripts, from their types."""
