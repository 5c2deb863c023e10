"""Configuration from environment variables (the conventional names of each platform)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.db import DEFAULT_URL
from storage.secrets import SECRET_KEY_ENV, SecretKeyError, parse_keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(DEFAULT_URL, validation_alias="DATABASE_URL")
    engagement: str | None = Field(None, validation_alias="CADENCE_ENGAGEMENT")
    environment: str = Field("development", validation_alias="CADENCE_ENV")
    secret_key: str | None = Field(None, validation_alias="CADENCE_SECRET_KEY")
    commands_per_minute: int = Field(20, ge=1, validation_alias="CADENCE_COMMANDS_PER_MINUTE")
    delivery_concurrency: int = Field(200, ge=1, validation_alias="CADENCE_DELIVERY_CONCURRENCY")
    """Messages a process sends at once. Most of a send is waiting for the workspace's rate limit, so a
    Monday fan-out across many workspaces needs many in flight (at most 10 DMs and 10 channel posts of
    one engagement at a time; one recipient's messages always go in order)."""
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    log_format: str = Field("text", validation_alias="LOG_FORMAT")

    slack_bot_token: str | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_client_id: str | None = Field(None, validation_alias="SLACK_CLIENT_ID")
    slack_client_secret: str | None = Field(None, validation_alias="SLACK_CLIENT_SECRET")
    slack_api_url: str | None = Field(None, validation_alias="SLACK_API_URL")
    slack_redirect_uri: str | None = Field(None, validation_alias="SLACK_REDIRECT_URI")

    teams_app_id: str | None = Field(None, validation_alias=AliasChoices("MicrosoftAppId", "MICROSOFT_APP_ID"))
    teams_app_password: str | None = Field(
        None, validation_alias=AliasChoices("MicrosoftAppPassword", "MICROSOFT_APP_PASSWORD")
    )
    teams_tenant_id: str | None = Field(
        None, validation_alias=AliasChoices("MicrosoftAppTenantId", "MICROSOFT_APP_TENANT_ID")
    )
    teams_app_type: str | None = Field(None, validation_alias=AliasChoices("MicrosoftAppType", "MICROSOFT_APP_TYPE"))
    teams_emulator: bool = Field(False, validation_alias="CADENCE_TEAMS_EMULATOR")
    """Serve /api/messages WITHOUT authentication (the Bot Framework Emulator's mode), for local development."""

    host: str = Field("0.0.0.0", validation_alias="HOST")
    port: int = Field(3000, validation_alias="PORT")

    @property
    def has_slack(self) -> bool:
        return bool(self.slack_signing_secret and (self.slack_bot_token or self.slack_client_id)) or bool(
            self.slack_app_token and self.slack_bot_token
        )

    @property
    def has_teams(self) -> bool:
        return bool(self.teams_app_id) or self.teams_emulator

    @property
    def production(self) -> bool:
        """Production mode: `CADENCE_ENV=production`, or chat credentials with a PostgreSQL database (a
        deployment, not a laptop). Chat tokens are then stored only encrypted, so the key is required."""
        if self.environment.strip().lower() == "production":
            return True
        return self.database_url.startswith("postgresql") and (self.has_slack or self.has_teams)

    def secret_key_problem(self) -> str | None:
        """Why the app must not start with this CADENCE_SECRET_KEY (None: fine)."""
        if self.secret_key and self.secret_key.strip():
            try:
                parse_keys(self.secret_key.strip())
            except SecretKeyError as exc:
                return str(exc)
            return None
        if self.production:
            return (
                f"{SECRET_KEY_ENV} is not set, and production mode (CADENCE_ENV=production, or PostgreSQL with "
                "chat credentials) stores chat tokens only encrypted: make a key with `cadence secrets new-key`"
            )
        return None
