"""SDKs: an OpenAPI 3 document made into a typed client and proxy scripts."""
