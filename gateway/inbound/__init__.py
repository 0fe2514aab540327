"""Inbound from Zoho: webhooks, the durable inbox, Notification API, catch-up."""
