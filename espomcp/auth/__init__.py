"""Identity: bearer tokens (RFC 6750), JWT access tokens (RFC 9068), protected resource metadata
(RFC 9728), OAuth scopes and the mapping of a token to an EspoCRM user."""
