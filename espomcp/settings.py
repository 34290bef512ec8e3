"""All configuration in one typed place: ``ESPOMCP_*`` environment variables and ``.env``.

Every field below is documented by its ``description``; ``docs/configuration.md`` is
generated from this class (``scripts/gen_config_doc.py``) so the two cannot drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_ENTITY_TYPES = (
    "Account",
    "Contact",
    "Lead",
    "Opportunity",
    "Case",
    "Meeting",
    "Call",
    "Task",
    "User",
    "Team",
)
READ_ONLY_ENTITY_TYPES = ("User", "Team")

CsvList = Annotated[list[str], NoDecode]


class ConfigError(Exception):
    """Configuration is missing or invalid; the message names the variable."""


class Settings(BaseSettings):
    """espomcp configuration. Environment variable = ``ESPOMCP_`` + field name upper-cased."""

    model_config = SettingsConfigDict(
        env_prefix="ESPOMCP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- HTTP server -------------------------------------------------------------------
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public base URL of this server (scheme://host[:port]); the MCP URL is "
        "this plus /mcp and is the OAuth resource identifier.",
    )
    allowed_origins: CsvList = Field(
        default_factory=list,
        description="Comma-separated Origin values allowed to call /mcp from a browser "
        "(the public URL's origin and loopback origins are always allowed).",
    )
    allowed_hosts: CsvList = Field(
        default_factory=list,
        description="Comma-separated Host header values accepted (DNS-rebinding protection); "
        "empty = the public URL's host plus loopback names.",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest accepted request body in bytes (413 above)."
    )
    data_dir: Path = Field(
        Path("var"),
        description="Directory for the embedded FGA store, the outbox, audit log and "
        "webhook secrets.",
    )
    log_level: str = Field("INFO", description="Python log level for the JSON log lines.")
    trusted_proxies: int = Field(
        0, ge=0, le=5,
        description="Number of reverse proxies in front of the server whose X-Forwarded-For/"
        "-Proto/-Host/-Prefix headers are trusted (0 = ignore them).",
    )
    rate_limit_per_minute: int = Field(
        600, ge=0, description="Requests per user per minute on /mcp (0 = unlimited)."
    )
    request_timeout_seconds: float = Field(
        30.0, gt=0, description="Upper bound for one tool call's upstream work: its EspoCRM "
        "and OpenFGA calls share this budget, each also capped by its own timeout."
    )

    # --- EspoCRM -----------------------------------------------------------------------
    espocrm_url: str = Field(
        "http://127.0.0.1:8200",
        description="EspoCRM site URL (without /api/v1), used for API calls and record links.",
    )
    espocrm_auth: Literal["apikey", "hmac"] = Field(
        "apikey", description="Service-account authentication: apikey or hmac."
    )
    espocrm_api_key: SecretStr = Field(
        SecretStr(""), description="API key of the EspoCRM API user (required)."
    )
    espocrm_secret_key: SecretStr = Field(
        SecretStr(""), description="HMAC secret key of the API user (required for hmac)."
    )
    espocrm_timeout_seconds: float = Field(10.0, gt=0, description="EspoCRM request timeout.")
    espocrm_retries: int = Field(
        2, ge=0, le=10, description="Retries for idempotent EspoCRM calls on 502/503/504."
    )
    entity_types: CsvList = Field(
        default_factory=lambda: list(DEFAULT_ENTITY_TYPES),
        description="Comma-separated EspoCRM entity types the tools may touch.",
    )
    read_only: bool = Field(False, description="Expose only read-only tools.")
    disabled_tools: CsvList = Field(
        default_factory=list, description="Comma-separated tool names to disable."
    )
    default_assigned_user_id: str = Field(
        "",
        description="EspoCRM user id to assign new records to when the caller cannot be "
        "mapped (empty = refuse to create).",
    )

    # --- Identity (Auth0) --------------------------------------------------------------
    auth_issuer: str = Field(
        "http://127.0.0.1:8100/",
        description="OAuth issuer (Auth0: https://TENANT.auth0.com/ with trailing slash).",
    )
    auth_audience: str = Field(
        "", description="Expected JWT audience; empty = the MCP URL (public_url + /mcp)."
    )
    auth_jwks_url: str = Field(
        "", description="JWKS URL; empty = issuer + .well-known/jwks.json."
    )
    auth_algorithms: CsvList = Field(
        default_factory=lambda: ["RS256"],
        description="Accepted JWS algorithms (asymmetric only; none/HS* are always refused).",
    )
    auth_leeway_seconds: int = Field(
        30, ge=0, le=300, description="Clock leeway for exp/nbf/iat."
    )
    jwks_refresh_cooldown_seconds: float = Field(
        30.0, ge=0, description="Minimum time between JWKS refetches on an unknown kid."
    )
    identity_claim: str = Field(
        "",
        description="JWT claim holding the EspoCRM user id or userName; empty = map by the "
        "token's email.",
    )
    list_all_tools: bool = Field(
        False, description="List every tool in tools/list, not only those the scopes allow."
    )

    # --- Fine-grained authorization ----------------------------------------------------
    fga_backend: Literal["embedded", "openfga", "off"] = Field(
        "embedded",
        description="embedded (in-process engine, default), openfga (OpenFGA/Auth0 FGA) or "
        "off (scope-only; logged loudly).",
    )
    fga_store_path: Path | None = Field(
        None, description="SQLite file of the embedded store; empty = data_dir/fga.sqlite3."
    )
    fga_model_path: Path | None = Field(
        None, description="Authorization model JSON; empty = the bundled fga/model.json."
    )
    fga_api_url: str = Field("", description="OpenFGA API URL (openfga backend).")
    fga_store_id: str = Field("", description="OpenFGA store id (ULID).")
    fga_model_id: str = Field("", description="OpenFGA authorization model id (ULID).")
    fga_api_token: SecretStr = Field(SecretStr(""), description="OpenFGA pre-shared API token.")
    fga_client_id: str = Field("", description="Auth0 FGA client id (client credentials).")
    fga_client_secret: SecretStr = Field(SecretStr(""), description="Auth0 FGA client secret.")
    fga_api_issuer: str = Field("", description="Auth0 FGA token issuer, e.g. auth.fga.dev.")
    fga_api_audience: str = Field("", description="Auth0 FGA API audience.")
    fga_timeout_seconds: float = Field(5.0, gt=0, description="FGA request timeout.")

    # --- Webhooks and admin console ------------------------------------------------------
    webhook_max_age_seconds: int = Field(
        3600, ge=60, description="Replay window for EspoCRM webhook deliveries."
    )
    admin_client_id: str = Field(
        "espomcp-admin", description="OAuth client id of the admin console."
    )
    session_secret: SecretStr = Field(
        SecretStr(""),
        description="Secret for admin-console session cookies; empty = random per process "
        "(sessions then end on restart).",
    )

    @field_validator(
        "allowed_origins", "allowed_hosts", "entity_types", "disabled_tools", "auth_algorithms",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("public_url", "espocrm_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("auth_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                   "ES512", "EdDSA"}
        bad = [alg for alg in value if alg not in allowed]
        if bad or not value:
            raise ValueError(f"only asymmetric algorithms are accepted, not {bad or 'none'}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.espocrm_auth == "hmac" and not self.espocrm_secret_key.get_secret_value():
            raise ValueError("ESPOMCP_ESPOCRM_SECRET_KEY is required when ESPOMCP_ESPOCRM_AUTH=hmac")
        if self.fga_backend == "openfga":
            for name in ("fga_api_url", "fga_store_id"):
                if not getattr(self, name):
                    raise ValueError(f"ESPOMCP_{name.upper()} is required when "
                                     "ESPOMCP_FGA_BACKEND=openfga")
        return self

    # --- derived values --------------------------------------------------------------
    @property
    def mcp_url(self) -> str:
        """Canonical MCP URL: the protected resource identifier."""
        return f"{self.public_url}/mcp"

    @property
    def audience(self) -> str:
        return self.auth_audience or self.mcp_url

    @property
    def jwks_url(self) -> str:
        return self.auth_jwks_url or self.auth_issuer.rstrip("/") + "/.well-known/jwks.json"

    @property
    def store_path(self) -> Path:
        return self.fga_store_path or self.data_dir / "fga.sqlite3"


def load_settings(*, needs_espocrm: bool = False, **overrides: object) -> Settings:
    """Read settings from the environment and ``.env``; raise ConfigError naming the variable.

    ``needs_espocrm``: the caller talks to EspoCRM, so the service-account key is required
    (commands that do not, such as ``token`` or ``fga test``, can run without it)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"])
            name = f"ESPOMCP_{loc.upper()}" if loc else "configuration"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
    if needs_espocrm and not settings.espocrm_api_key.get_secret_value():
        raise ConfigError("invalid configuration:\n  ESPOMCP_ESPOCRM_API_KEY: required: the API "
                          "key of the EspoCRM API user this server acts through (set it in the "
                          "environment or .env; the demo prints its settings)")
    return settings
