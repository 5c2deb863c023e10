"""Configuration from environment variables (the conventional names of each platform)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.db import DEFAULT_URL


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(DEFAULT_URL, validation_alias="DATABASE_URL")
    engagement: str | None = Field(None, validation_alias="CADENCE_ENGAGEMENT")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")

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
