"""The admin console: login, the configuration page, status and actions."""
